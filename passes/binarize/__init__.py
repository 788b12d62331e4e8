"""The binarize stage: float network -> deployed network (crossbars, axon types, integer weights,
thresholds, the input encoding). Five passes, one per method:

- ``binarize_deterministic`` (``deterministic.py``): exact for networks trained for the chip;
- ``binarize_stochastic`` (``stochastic.py``): sampled copies of a probabilistic network;
- ``binarize_lsq`` (``lsq.py``, fit in ``lsq_fit.py`` and ``lsq_refine.py``): least-squares synapses;
- ``binarize_ttfs`` (``ttfs.py``): time-to-first-spike coding, one spike per hidden neuron;
- ``binarize_rate`` (``rate.py``, weight codes in ``codes.py``, calibration spikes in ``trains.py``):
  float ReLU networks as rate-coded integrate-and-fire neurons.

Shared algorithms: ``analysis.py`` resolves the float network into layers, ``levels.py`` turns float
weights into integer levels, ``axon_types.py`` colours a core's inputs into axon types and
``build.py`` assembles the deployed network.
"""

from crossmap.passes.binarize.deterministic import BinarizeDeterministic
from crossmap.passes.binarize.lsq import BinarizeLsq
from crossmap.passes.binarize.rate import BinarizeRate
from crossmap.passes.binarize.stochastic import BinarizeStochastic
from crossmap.passes.binarize.ttfs import BinarizeTtfs

__all__ = ["BinarizeDeterministic", "BinarizeLsq", "BinarizeRate", "BinarizeStochastic", "BinarizeTtfs"]
