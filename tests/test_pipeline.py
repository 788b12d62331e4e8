"""Pipeline specs: parsing, errors, and the canonical round trip."""

import pytest

from crossmap.errors import PipelineError
from crossmap.pipeline import DEFAULT_PIPELINE, format_pipeline, parse_pipeline


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
        parse_pipeline("place{speed=3}")
