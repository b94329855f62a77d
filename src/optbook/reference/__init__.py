"""NumPy references of every update rule in the book, one function per formula.

Part I (gradient descent to Sophia) lives in one module per family, and
every name is also available here, so a chapter can write
``from optbook.reference import adam_step, run``:

``gd``
    gradient descent, mini-batches, L2 penalty versus decoupled weight decay
``momentum``
    momentum and Nesterov's accelerated gradient
``adaptive``
    Adagrad, RMSProp, AdaDelta and the moving average they share
``adam``
    Adam, its combined step-size form, AdamW
``lion``
    Lion
``sophia``
    Sophia and the Hutchinson and Gauss-Newton-Bartlett estimators
``trajectory``
    :func:`run`, which traces any of the rules on a test function
``adamax``, ``nadam``, ``adam_variants``
    AdaMax, Nadam, and Adam as the lecture's slide writes it (with SGDW)
``newton``
    Newton's method
``logged_run``
    :func:`run_logged`, a runner that keeps a log instead of every iterate
``averaging``, ``factored``, ``instability``
    iterate averaging, factored second moments, instability measurements (used by their names)
``radam``, ``adamod``, ``lookahead``, ``diffgrad``, ``gradient_centralization``, ``adamw_schedule``
    the lecture's "improve Adam" rules: RAdam, AdaMod, Lookahead and Ranger, diffGrad,
    gradient centralization, and AdamW in the paper's form with its schedule multiplier
``sm3``, ``came``, ``adam_mini``, ``galore``, ``blockwise_quantised``, ``shampoo``, ``muon``, ``schedule_free``
    Adafactor's successors: SM3, CAME, Adam-mini, GaLore, 8-bit states, Shampoo and SOAP, Muon,
    schedule-free AdamW (used by their names)
``adafactor``
    Adafactor, kept under its own name (``optbook.reference.adafactor.step``)

Every rule is a pure function ``<rule>_step(x, g, state, **hyperparameters)``
returning ``(x_new, state_new)``; ``state=None`` means the state before the
first step, which ``init_<rule>_state(x)`` also builds.
"""

from optbook.reference import (
    adafactor, adam, adam_variants, adamax, adaptive, gd, logged_run, lion, momentum, nadam, newton, sophia, trajectory,
)
from optbook.reference import adam_mini, blockwise_quantised, came, galore, muon, schedule_free, shampoo, sm3  # noqa: F401  (Adafactor's successors, used by their names)
from optbook.reference.adam import *  # noqa: F401,F403
from optbook.reference.adaptive import *  # noqa: F401,F403
from optbook.reference.gd import *  # noqa: F401,F403
from optbook.reference.lion import *  # noqa: F401,F403
from optbook.reference.momentum import *  # noqa: F401,F403
from optbook.reference.sophia import *  # noqa: F401,F403
from optbook.reference.trajectory import *  # noqa: F401,F403
from optbook.reference.adamax import *  # noqa: F401,F403
from optbook.reference.nadam import *  # noqa: F401,F403
from optbook.reference.adam_variants import *  # noqa: F401,F403
from optbook.reference.newton import *  # noqa: F401,F403
from optbook.reference.logged_run import *  # noqa: F401,F403
from optbook.reference import adamod, adamw_schedule, diffgrad, gradient_centralization, lookahead, radam  # noqa: E402
from optbook.reference.radam import *  # noqa: F401,F403
from optbook.reference.adamod import *  # noqa: F401,F403
from optbook.reference.gradient_centralization import *  # noqa: F401,F403
from optbook.reference.diffgrad import *  # noqa: F401,F403
from optbook.reference.lookahead import *  # noqa: F401,F403
from optbook.reference.adamw_schedule import *  # noqa: F401,F403

__all__ = [
    "adafactor",
    "adam",
    "adaptive",
    "gd",
    "lion",
    "momentum",
    "sophia",
    "trajectory",
    "adamax",
    "nadam",
    "adam_variants",
    "newton",
    "logged_run",
    *gd.__all__,
    *momentum.__all__,
    *adaptive.__all__,
    *adam.__all__,
    *lion.__all__,
    *sophia.__all__,
    *trajectory.__all__,
    *adamax.__all__,
    *nadam.__all__,
    *adam_variants.__all__,
    *newton.__all__,
    *logged_run.__all__,
    "radam",
    "adamod",
    "gradient_centralization",
    "diffgrad",
    "lookahead",
    "adamw_schedule",
    *radam.__all__,
    *adamod.__all__,
    *gradient_centralization.__all__,
    *diffgrad.__all__,
    *lookahead.__all__,
    *adamw_schedule.__all__,
]
