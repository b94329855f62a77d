"""Real learning tasks on data that ships with a package, and the models trained on them.

:mod:`~optbook.tasks.datasets`
    scikit-learn's digits and diabetes sets, softmax cross-entropy, a small MLP
    and its training loop;
:mod:`~optbook.tasks.softmax`
    multinomial logistic regression as a finite sum, with its exact curvature;
:mod:`~optbook.tasks.least_squares`
    linear least squares on real data;
:mod:`~optbook.tasks.experiments`, :mod:`~optbook.tasks.epoch_runs`
    every optimizer of the book by name, trained on a task; epochs of (mini-)batch training;
:mod:`~optbook.tasks.text_corpus`, :mod:`~optbook.tasks.charlm`
    Python's standard library as a character corpus, and a small Transformer for it;
:mod:`~optbook.tasks.model_shapes`
    parameter shapes of published models (GPT-2, BERT, T5, LLaMA);
:mod:`~optbook.tasks.schedule_runs`, :mod:`~optbook.tasks.improve_adam_runs`, :mod:`~optbook.tasks.successor_runs`
    the experiments of the schedules, "improve Adam" and "After Adafactor" chapters;
:mod:`~optbook.tasks.t5_mini`, :mod:`~optbook.tasks.vit_digits`, :mod:`~optbook.tasks.long_run`
    a small T5-style encoder-decoder, a small ViT on the digits set, and a run of 10^4 steps;
:mod:`~optbook.tasks.stored_runs`, :mod:`~optbook.tasks.stored_results`
    long runs and long experiments stored once (with a checksum) and re-checked live.

The names of ``datasets``, ``softmax``, ``experiments`` and ``epoch_runs`` are also available here,
e.g. ``optbook.tasks.digits``; the other modules are used by their names.
"""

from optbook.tasks import charlm, datasets, epoch_runs, experiments, least_squares, model_shapes, softmax, stored_results, stored_runs, text_corpus
from optbook.tasks import long_run, t5_mini, vit_digits  # noqa: F401
from optbook.tasks import adam_runs, lion_sophia_runs, visualising_runs  # noqa: F401
from optbook.tasks.datasets import *  # noqa: F401,F403
from optbook.tasks.softmax import *  # noqa: F401,F403
from optbook.tasks.experiments import *  # noqa: F401,F403
from optbook.tasks.epoch_runs import *  # noqa: F401,F403

__all__ = [
    "charlm",
    "datasets",
    "epoch_runs",
    "experiments",
    "least_squares",
    "model_shapes",
    "softmax",
    "stored_results",
    "stored_runs",
    "text_corpus",
    *datasets.__all__,
    *softmax.__all__,
    *experiments.__all__,
    *epoch_runs.__all__,
]
