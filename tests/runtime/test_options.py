"""RunOptions: the model's defaults resolved in one place, every value checked."""
import pytest

from objaudio_rt.core.config import ModelConfig
from objaudio_rt.core.errors import ObjaudioError
from objaudio_rt.core.options import RunOptions


def test_defaults_come_from_the_model():
    config = ModelConfig.from_name("tiny-synth")
    run = RunOptions().resolve(config)
    assert (run.steps, run.sampler, run.cfg, run.seed, run.duration, run.union) == (
        config.default_steps, config.default_sampler, config.default_cfg, 0, config.clip_seconds, "mix")
    assert RunOptions(steps=3, cfg=2, union="mask").resolve(config, union="compose").union == "mask"
    assert RunOptions().resolve(config, union="mask").union == "mask"
    assert isinstance(RunOptions(cfg=2).resolve(config).cfg, float)


@pytest.mark.parametrize("options,match", [
    (dict(steps=0), r"steps must be an integer in \[1, 999\]"), (dict(sampler="euler"), "unknown sampler"),
    (dict(cfg=0.5), "cfg"), (dict(cfg=float("nan")), "cfg"), (dict(seed=-1), "seed"),
    (dict(duration=0.0), "duration"), (dict(duration=1e6), "duration"), (dict(union="both"), "union mode"),
])
def test_bad_values_are_one_clear_error(options, match):
    with pytest.raises(ObjaudioError, match=match):
        RunOptions(**options).resolve(ModelConfig.from_name("tiny"))
