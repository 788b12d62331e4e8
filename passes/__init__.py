"""The compiler's passes, one package per stage: ``binarize``, ``partition``, ``place``, ``route``
and ``emit``. ``registry()`` names every pass; ``crossmap.pipeline`` parses specs against it."""

from __future__ import annotations


def registry() -> dict[str, type]:
    """Every pass class by its spec name, in pipeline order."""
    from crossmap.passes.binarize import BinarizeDeterministic, BinarizeLsq, BinarizeRate, BinarizeStochastic, BinarizeTtfs
    from crossmap.passes.emit import Emit
    from crossmap.passes.partition import Partition
    from crossmap.passes.place import Place
    from crossmap.passes.route import Route

    classes = [BinarizeDeterministic, BinarizeStochastic, BinarizeLsq, BinarizeTtfs, BinarizeRate, Partition, Place, Route, Emit]
    return {cls.name: cls for cls in classes}
