"""Pipeline specs: parsing, errors, and the canonical round trip."""

from dataclasses import dataclass
from typing import ClassVar

import pytest

from crossmap.chip import ChipSpec
from crossmap.errors import PipelineError
from crossmap.passes import registry
from crossmap.pipeline import (ARTIFACTS, COMPILE_INPUTS, DEFAULT_PIPELINE, CompileState, format_pipeline,
                               parse_pipeline, run_pipeline)


def test_unknown_pass_lists_available():
    with pytest.raises(PipelineError, match="unknown pass 'shuffle'.*partition"):
        parse_pipeline("shuffle")


def test_garbage_spec_is_reported_with_position():
    with pytest.raises(PipelineError, match="cannot parse pipeline spec at character"):
        parse_pipeline("partition,,")


def test_empty_spec():
    with pytest.raises(PipelineError, match="empty pipeline"):
        parse_pipeline("  ")


def test_default_pipeline_round_trips():
    passes = parse_pipeline(DEFAULT_PIPELINE)
    assert [p.name for p in passes] == DEFAULT_PIPELINE.split(",")
    canonical = format_pipeline(passes)
    again = parse_pipeline(canonical)
    assert format_pipeline(again) == canonical
    assert again == passes


def test_unknown_option_names_the_pass_and_its_options():
    with pytest.raises(PipelineError, match="pass 'place': unknown option 'speed'"):
        parse_pipeline("place{speed=3}", given=("program",))


def test_a_pass_on_the_wrong_ir_is_refused_with_its_position():
    with pytest.raises(PipelineError, match=r"position 1 \('partition'\) reads a deployed network.*"
                                            r"'binarize_deterministic' or 'binarize_stochastic' or 'binarize_lsq'"):
        parse_pipeline("partition,binarize_deterministic")
    with pytest.raises(PipelineError, match=r"position 2 \('place'\) reads a program of logical cores.*"
                                            r"put 'partition' before it"):
        parse_pipeline("binarize_deterministic,place,route,emit")
    with pytest.raises(PipelineError, match=r"position 1 \('binarize_lsq'\) reads calibration inputs"):
        parse_pipeline("binarize_lsq", given=("network",))


def test_a_spec_is_checked_before_any_work(tmp_path):
    import crossmap

    with pytest.raises(PipelineError, match="position 1"):
        crossmap.compile(tmp_path / "no_such_model.onnx", tmp_path / "out", pipeline="place,route,emit")
    assert not (tmp_path / "out").exists()


def test_every_pass_declares_what_it_reads_and_produces():
    passes = registry()
    assert list(passes) == ["binarize_deterministic", "binarize_stochastic", "binarize_lsq", "binarize_ttfs",
                            "binarize_rate", "partition", "place", "route", "emit"]
    for name, cls in passes.items():
        assert cls.name == name
        assert set(cls.reads) | set(cls.produces) <= set(ARTIFACTS), name
        assert cls.produces, name
    spec_order = parse_pipeline(DEFAULT_PIPELINE)  # the default pipeline satisfies every declaration
    made = set(COMPILE_INPUTS)
    for p in spec_order:
        assert set(p.reads) <= made
        made |= set(p.produces)


@dataclass
class Idle:
    """A pass that declares a deployed network and makes none."""

    name: ClassVar[str] = "idle"
    reads: ClassVar[tuple[str, ...]] = ("network",)
    produces: ClassVar[tuple[str, ...]] = ("deployed",)

    def run(self, state: CompileState) -> CompileState:
        return state


def test_a_pass_that_does_not_make_what_it_declares_is_stopped():
    state = CompileState(chip=ChipSpec.truenorth())
    with pytest.raises(PipelineError, match="pass 'idle' declares that it produces a deployed network"):
        run_pipeline([Idle()], state)


def test_the_float_network_is_released_after_the_last_pass_that_reads_it():
    from crossmap.frontend import import_onnx
    from crossmap.testing import onnx_models as om

    network = import_onnx(om.binary_mlp((8, 4, 2)))
    seen = []

    @dataclass
    class Look:
        """A pass that reads nothing and notes whether the state still holds the network."""

        name: ClassVar[str] = "look"
        reads: ClassVar[tuple[str, ...]] = ()
        produces: ClassVar[tuple[str, ...]] = ()

        def run(self, state: CompileState) -> CompileState:
            seen.append(state.network is not None)
            return state

    @dataclass
    class Read(Look):
        reads: ClassVar[tuple[str, ...]] = ("network",)

    state = run_pipeline([Read(), Look(), Read(), Look()], CompileState(chip=ChipSpec.truenorth(), network=network))
    assert seen == [True, True, True, False]
    assert state.network is None and state.model_input_shape() == tuple(network.input.shape) == (8,)


@pytest.mark.parametrize("release", [True, False])
def test_a_pass_learns_which_of_its_inputs_no_later_pass_reads(release):
    seen = []

    @dataclass
    class Note:
        """A pass that reads the deployed network and notes what it may free."""

        name: ClassVar[str] = "note"
        reads: ClassVar[tuple[str, ...]] = ("deployed", "calibration")
        produces: ClassVar[tuple[str, ...]] = ()

        def run(self, state: CompileState) -> CompileState:
            seen.append(state.last_reads)
            return state

    @dataclass
    class Deployed(Note):
        reads: ClassVar[tuple[str, ...]] = ("deployed",)

    run_pipeline([Note(), Deployed(), Note(), Deployed()],
                 CompileState(chip=ChipSpec.truenorth(), release_inputs=release))
    assert seen == ([(), (), ("calibration",), ("deployed",)] if release else [(), (), (), ()])


def test_compile_frees_the_deployed_network_after_partition_and_the_program_is_the_same():
    from crossmap.frontend import import_onnx
    from crossmap.testing import onnx_models as om

    model = om.binary_mlp((12, 8, 4))
    passes = "binarize_deterministic,partition,place,route"
    kept = run_pipeline(parse_pipeline(passes), CompileState(chip=ChipSpec.truenorth(), network=import_onnx(model)))
    freed = run_pipeline(parse_pipeline(passes), CompileState(chip=ChipSpec.truenorth(), network=import_onnx(model),
                                                              release_inputs=True))
    assert kept.deployed is not None and freed.deployed is None
    assert kept.program.checksum() == freed.program.checksum()
