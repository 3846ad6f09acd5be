"""Configuration errors name the file, the stage or analyzer, the key and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lunettes.analyzers.stagedefs import StageSet
from lunettes.config.errors import ConfigError
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline


def _problems(stages: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        StageSet.parse(stages, "stages.yaml")
    return info.value.problems


def test_default_configs_are_valid() -> None:
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, env={})
    names = [s.name for s in pipeline.stage_set.stages]
    assert names[0] == "delivery"
    assert {"scheduling", "kubelet_pickup", "sandbox", "image_pull", "init_containers",
            "container_create", "container_start", "readiness", "readiness_gates"} <= set(names)
    pipeline.shutdown()


def test_all_stage_problems_are_reported_at_once() -> None:
    problems = _problems({"stages": [
        {"name": "delivery", "root": True, "start": {"op": "create"},
         "end": {"condition": "Ready", "status": "True"}},
        {"name": "pull", "owner": "platfrom", "per": "images",
         "start": {"reasn": "Pulling"}, "end": {"reason": "Pulled", "message": "(["}},
        {"name": "pull", "start": {"op": "bound"}},
    ]})
    text = "\n".join(problems)
    assert "stages.yaml: stages[1] (pull).owner: unknown owner 'platfrom'" in text
    assert "stages[1] (pull).per: unknown value 'images'; supported: container, image" in text
    assert "stages[1] (pull).start.reasn: unknown key (did you mean reason?)" in text
    assert "stages[1] (pull).end.message: invalid regular expression" in text
    assert "stages[2] (pull).name: duplicate stage name 'pull'" in text
    assert "stages[2] (pull).start.op: unknown value(s) bound; supported: create, bind" in text
    assert "stages[2] (pull).end: missing" in text


def test_exactly_one_root() -> None:
    problems = _problems({"stages": [{"name": "a", "start": {"op": "create"},
                                      "end": {"op": "bind"}}]})
    assert problems == ["stages.yaml: exactly one stage must have root: true (found 0)"]


def test_pick_and_type_errors() -> None:
    problems = _problems({"stages": [
        {"name": "d", "root": "yes", "start": {"pick": "middle", "match": {"op": "create"}},
         "end": [{"op": "bind"}, {"init": "no"}]},
    ]})
    text = "\n".join(problems)
    assert "stages[0] (d).root: expected bool, got str 'yes'" in text
    assert "stages[0] (d).start.pick: unknown value 'middle'; supported: first, last" in text
    assert "stages[0] (d).end[1].init: expected bool, got str 'no'" in text


def _config_dir(tmp_path: Path, pipeline: dict) -> Path:
    shutil.copy(DEFAULT_CONFIG_DIR / "stages.yaml", tmp_path / "stages.yaml")
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    return tmp_path


def test_pipeline_problems_name_path_and_fix(tmp_path: Path) -> None:
    config = _config_dir(tmp_path, {
        "processors": ["clock", {"reorder": {"window": 3}}, {"fold": {"timeout_s": "long"}}],
        "analyzers": {"stages": {}, "lifecycle": {"needs": ["stage"]}},
        "sinks": {"sqlite": {"pth": "x.db"}, "kafka": {}},
        "extra": 1,
    })
    with pytest.raises(ConfigError) as info:
        Pipeline.from_config(config)
    text = "\n".join(info.value.problems)
    assert "processors.reorder.window: unknown key (did you mean window_s?)" in text
    assert "processors.fold.timeout_s: expected int or float, got str 'long'" in text
    assert "analyzers.lifecycle.needs: unknown analyzer 'stage' (did you mean stages?)" in text
    assert "sinks.sqlite.pth: unknown key (did you mean path?)" in text
    assert "sinks.kafka: unknown type 'kafka'; supported: " in text and "sqlite" in text
    assert "pipeline.yaml: extra: unknown key" in text


def test_cycles_are_printed(tmp_path: Path) -> None:
    config = _config_dir(tmp_path, {"analyzers": {
        "stages": {"needs": ["lifecycle"]}, "lifecycle": {"needs": ["stages"]}}})
    with pytest.raises(ConfigError) as info:
        Pipeline.from_config(config)
    cycles = [p for p in info.value.problems if "cycle" in p]
    assert len(cycles) == 1
    assert cycles[0].endswith(("cycle stages -> lifecycle -> stages",
                               "cycle lifecycle -> stages -> lifecycle"))


def test_unknown_analyzer_type_lists_supported(tmp_path: Path) -> None:
    config = _config_dir(tmp_path, {"analyzers": {
        "stages": {}, "lifecycle": {"needs": ["stages"]}, "magic": {"type": "oracle"}}})
    with pytest.raises(ConfigError) as info:
        Pipeline.from_config(config)
    assert any("analyzers.magic.type: unknown type 'oracle'; supported: " in p and
               "lifecycle" in p for p in info.value.problems)


def _defaults_with(tmp_path: Path, edit: dict[str, str]) -> Path:
    """A copy of the default configuration with files replaced by ``edit``'s texts."""
    for name in ("pipeline.yaml", "stages.yaml", "diagnosis.yaml", "slo.yaml"):
        shutil.copy(DEFAULT_CONFIG_DIR / name, tmp_path / name)
    for name, text in edit.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _replace(name: str, old: str, new: str) -> str:
    text = (DEFAULT_CONFIG_DIR / name).read_text()
    assert old in text
    return text.replace(old, new, 1)


def test_stage_names_in_other_files_are_checked_once_against_stages_yaml(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lunettes.cli.main import main

    config = _defaults_with(tmp_path, {
        "slo.yaml": "pod_start_sli: {started: container_strat}\n"
                    "default: {name: standard, deadline_s: 60}\n",
        "diagnosis.yaml": _replace("diagnosis.yaml", "\n  image_pull:", "\n  image_pul:"),
    })
    assert main(["validate-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert (f"{config / 'slo.yaml'}: pod_start_sli.started: unknown stage 'container_strat' "
            "(did you mean container_start?); stages defines: delivery, ") in err
    assert "slow.image_pul: unknown stage 'image_pul' (did you mean image_pull?)" in err
    assert err.count("\n  ") == 2, err  # two problems, each printed once


def test_a_stages_yaml_error_is_printed_once(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from lunettes.cli.main import main

    config = _defaults_with(tmp_path, {"stages.yaml": _replace(
        "stages.yaml", "owner: platform\n    per: image", "owner: platfrom\n    per: image")})
    assert main(["validate-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("unknown owner 'platfrom'") == 1, err


def test_roles_a_required_input_does_not_play_are_errors(tmp_path: Path) -> None:
    config = _defaults_with(tmp_path, {"pipeline.yaml": yaml.safe_dump({"analyzers": {
        "stages": {}, "lifecycle": {"needs": ["stages"]},
        "diagnosis": {"needs": ["stages"]},
        "slo": {"needs": ["stages", "lifecycle", "diagnosis"]},
        "slo/again": {"type": "slo", "needs": ["stages", "lifecycle", "lifecycle/copy"]},
        "lifecycle/copy": {"type": "lifecycle", "needs": ["stages"]}}})})
    with pytest.raises(ConfigError) as info:
        Pipeline.from_config(config)
    assert info.value.problems == [
        f"{config / 'pipeline.yaml'}: analyzers.diagnosis.needs: no input plays the "
        "lifecycle role this analyzer requires; add lifecycle or lifecycle/copy",
        f"{config / 'pipeline.yaml'}: analyzers.slo/again.needs: several inputs play the "
        "lifecycle role: lifecycle, lifecycle/copy; keep one",
    ]


def test_validate_config_warns_of_a_platform_stage_that_can_stay_open(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lunettes.cli.main import main

    stages = (DEFAULT_CONFIG_DIR / "stages.yaml").read_text() + (
        "\n  - name: node_warmup\n    owner: platform\n    start: {op: bind}\n"
        "    end: {reason: Started}\n")
    config = _defaults_with(tmp_path, {"stages.yaml": stages})
    assert main(["validate-config", str(config)]) == 0  # valid, with a warning
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1
    assert "stage node_warmup: a platform stage that can stay open" in err
    assert main(["validate-config", str(DEFAULT_CONFIG_DIR)]) == 0
    assert "warning" not in capsys.readouterr().err
