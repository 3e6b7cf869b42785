"""SynthLEVIR: procedurally generated bi-temporal aerial scenes, written in the real LEVIR layouts.

It produces data for the LEVIR-CC / LEVIR-MCI / LEVIR-CD readers of :mod:`semcc.data.levir` (the same
readers load the real data sets): a ``LEVIR-CC`` folder (``LevirCCcaptions.json``, ``images/{split}/{A,B}``
pairs and LEVIR-MCI ``label`` masks: 255 building change, 128 road change, 0 nothing) and a ``LEVIR-CD``
folder (``{split}/{A,B,label}`` tiles of ``cd_scale * size`` pixels, 0/255 building-change labels).

Scenes are drawn with numpy and Pillow only: bare land, grass or desert ground, tree clusters with shadows,
roads and houses in varied colours and sizes. About ``no_change_ratio`` of the pairs are unchanged; the
others get one change event (buildings appear or are demolished, a road is built, trees are removed...).
Nuisances that are not changes (illumination and colour shift, seasonal tint, misregistration, sensor
noise; strength ``nuisance``) are applied to A and B independently; masks and captions never mention them.
Captions (five per changed pair, different wordings) use only words of the real LEVIR-CC vocabulary and are
true to the pixels.

Changed houses never touch each other (a gap of at least two pixels), so the connected components of the
building-change mask count them. ``LEVIR-CC/synth_meta.json`` records, per pair, the changed objects
(kind, action, count, bounding boxes, place, context) and, per caption, the count words and place it uses.
Every pair is drawn from its own generator ``np.random.default_rng([seed, stream, split, index])``, so the
files do not depend on the number of worker processes; the same seed and config give identical bytes.

The package, in the order data flows through it:

* :mod:`.config`: :class:`SynthLEVIRConfig` (counts per split, size, seed, nuisance, workers);
* :mod:`.scene`: one scene's objects and their rendering at time A or B;
* :mod:`.events`: the change event of a pair, the changed blocks of a tile, the unchanged content;
* :mod:`.language`: the caption rules (:func:`count_words`, :func:`place_of`, templates);
* :mod:`.layouts`: one LEVIR-CC pair with its LEVIR-MCI label and captions, one LEVIR-CD tile;
* :mod:`.writing`: :func:`generate_synth_levir` and :func:`is_generated` (the folders on disk);
* :mod:`.preview`: :func:`write_preview` (the picture of ``semcc synth --preview``).
"""

from semcc.data.synthetic.config import SPLITS, SynthLEVIRConfig
from semcc.data.synthetic.language import count_words, place_of
from semcc.data.synthetic.preview import write_preview
from semcc.data.synthetic.writing import generate_synth_levir, is_generated

__all__ = [
    "SPLITS",
    "SynthLEVIRConfig",
    "count_words",
    "generate_synth_levir",
    "is_generated",
    "place_of",
    "write_preview",
]
