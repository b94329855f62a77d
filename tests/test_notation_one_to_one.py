r"""Each Greek letter of Part I means one thing: λ is weight decay (an L2 penalty), γ is momentum.

Curvatures (eigenvalues of a Hessian) are :math:`h`, the decay of RMSProp's and AdaDelta's averages is
:math:`\beta`, Sophia's Hessian scale is :math:`\zeta`. The notation appendix is generated from the
``@symbol`` registry, so the registry is checked, and so are the chapters' own words.
"""

import json
import re
from pathlib import Path

import pytest

from optbook.notation import notation_table

ROOT = Path(__file__).resolve().parents[1]
LAMBDA = re.compile(r"\\lambda(?![A-Za-z])")
GAMMA = re.compile(r"\\gamma(?![A-Za-z])")


def test_registry_lambda_is_weight_decay_and_gamma_is_momentum():
    for entry in notation_table():
        if LAMBDA.search(entry.latex):
            assert re.search(r"decay|L2|penalty|AdamW|Lion", entry.meaning), (entry.function, entry.meaning)
        if GAMMA.search(entry.latex):
            assert re.search(r"momentum|Nesterov|heavy-ball|velocity|NAG", entry.meaning), (entry.function, entry.meaning)


def _sentences(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            # A sentence ends at a full stop followed by a space or a line break.
            yield from re.split(r"(?<=[.!?])\s+", "".join(cell["source"]))


CHAPTERS = sorted((ROOT / "book" / "part1").glob("*.ipynb")) + sorted((ROOT / "book" / "part2").glob("*.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_use_lambda_and_gamma_in_one_sense(chapter):
    wrong = []
    for sentence in _sentences(chapter):
        quoted = re.search(r"lecture's|slide|paper's|the paper writes", sentence)
        eigenvalue = re.search(r"\\lambda_\{?\\?(max|min|i)\b", sentence)
        if LAMBDA.search(sentence) and (re.search(r"curvature", sentence) or eigenvalue) and not re.search(r"decay|penalty", sentence):
            wrong.append(sentence)
        if GAMMA.search(sentence) and re.search(r"RMSProp|AdaDelta|Sophia|E\[g\^2\]", sentence) and not quoted:
            wrong.append(sentence)
    assert not wrong, "\n---\n".join(wrong)
