"""The one config loader (:mod:`diffusion_gym.config`): shipped YAML files, errors, overrides."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from diffusion_gym.config import (
    ConfigError,
    ConfigTypeError,
    apply_overrides,
    load,
    to_dict,
    valid_keys,
)

ROOT = Path(__file__).resolve().parent.parent
AGENT_CONFIGS = sorted((ROOT / "agents" / "configs").glob("*.yaml"))
COMPARE_CONFIGS = sorted((ROOT / "baselines" / "configs").glob("compare*.yaml"))
BENCHMARK_CONFIGS = sorted((ROOT / "baselines" / "configs").glob("benchmark*.yaml"))


def _first_attr(candidates: list[tuple[str, str]]):
    """The first ``module.attr`` that imports (the classes move between packages)."""
    for module, attr in candidates:
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    pytest.skip(f"none of {candidates} is importable")


def _agent_config_class(path: Path):
    agent = yaml.safe_load(path.read_text())["agent"]
    return _first_attr([(f"agents.{agent}", "Config"), (f"agents.{agent}.config", "Config")])


def _compare_config_class():
    return _first_attr([("baselines.compare", "CompareConfig")])


def _benchmark_config_class():
    return _first_attr(
        [
            ("agents.benchmark", "BenchmarkConfig"),
            ("agents.benchmark.config", "BenchmarkConfig"),
            ("baselines.benchmark", "BenchmarkConfig"),
        ]
    )


def _assert_matches_yaml(obj, data, where: str = "") -> None:
    """Every value written in the YAML file is the config's value (and of the same kind)."""
    for key, value in data.items():
        got = getattr(obj, key)
        if isinstance(value, dict) and dataclasses.is_dataclass(got):
            _assert_matches_yaml(got, value, f"{where}{key}.")
        elif isinstance(value, list) and got and dataclasses.is_dataclass(got[0]):
            for i, (g, v) in enumerate(zip(got, value, strict=True)):
                _assert_matches_yaml(g, v, f"{where}{key}[{i}].")
        else:
            assert to_dict(got) == value, f"{where}{key}"
            if isinstance(value, float):
                assert type(got) is float, f"{where}{key}"


def _check_round_trip(cls, cfg) -> None:
    plain = to_dict(cfg)
    assert yaml.safe_load(yaml.safe_dump(plain, sort_keys=False)) == plain  # YAML-safe
    again = load(cls, yaml.safe_load(yaml.safe_dump(plain, sort_keys=False)))
    assert again == cfg and repr(again) == repr(cfg)


# ---------------------------------------------------------------------------------------------
# Every shipped YAML file


@pytest.mark.parametrize("path", AGENT_CONFIGS, ids=lambda p: p.name)
def test_agent_configs_load(path):
    cls = _agent_config_class(path)
    cfg = load(cls, path)
    _assert_matches_yaml(cfg, yaml.safe_load(path.read_text()))
    _check_round_trip(cls, cfg)
    train = pytest.importorskip("agents.train")
    if hasattr(train, "_build"):  # the old loader, while it exists: the same value and types
        _, old = train.load_config(path)
        assert repr(old) == repr(cfg)


@pytest.mark.parametrize("path", COMPARE_CONFIGS, ids=lambda p: p.name)
def test_compare_configs_load(path):
    cls = _compare_config_class()
    cfg = load(cls, path)
    _assert_matches_yaml(cfg, yaml.safe_load(path.read_text()))
    _check_round_trip(cls, cfg)
    compare = pytest.importorskip("baselines.compare")
    if hasattr(compare, "_from_dict"):
        assert repr(compare.load_config(path)) == repr(cfg)


@pytest.mark.parametrize("path", BENCHMARK_CONFIGS, ids=lambda p: p.name)
def test_benchmark_configs_load(path):
    cls = _benchmark_config_class()
    cfg = load(cls, path)
    _assert_matches_yaml(cfg, yaml.safe_load(path.read_text()))
    _check_round_trip(cls, cfg)
    assert all(dataclasses.is_dataclass(e) for e in cfg.envs)


def test_irl_ring8_explicit_values():
    path = ROOT / "agents" / "configs" / "irl-ring8.yaml"
    cfg = load(_agent_config_class(path), path, ["seed=3", "algo.learning_rate=3e-4"])
    assert (cfg.seed, cfg.rounds, cfg.env.num_envs, cfg.env.num_steps) == (3, 150, 256, 4)
    assert cfg.env.guidance_weights == [0.0, 1.0, 1.5, 2.0, 3.0, 5.0]
    assert cfg.algo.learning_rate == 3e-4 and cfg.discriminator.divergence == "reverse_kl"


def test_compare_ring8_explicit_values():
    path = ROOT / "baselines" / "configs" / "compare-ring8.yaml"
    cfg = load(_compare_config_class(), path)
    assert cfg.presets == ["gmm-ring8", "gmm-ring8-imperfect"] and cfg.nfe == [5, 9]
    assert cfg.seeds == [0, 1, 2] and cfg.num_samples == 1024 and cfg.reference_steps == 128
    assert cfg.strategies[0] == "edm-rho7" and cfg.guidance_schedule == "oracle"


# ---------------------------------------------------------------------------------------------
# The rules, on small dataclasses


@dataclass
class Inner:
    rate: float = 0.5
    widths: list[int] = field(default_factory=lambda: [8, 8])
    shape: tuple[int, ...] = (2,)
    clip: float | None = None

    def __post_init__(self):
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0, got {self.rate}")


@dataclass
class Item:
    id: str
    kwargs: dict = field(default_factory=dict)


@dataclass
class Outer:
    seed: int = 0
    name: str = "run"
    verbose: bool = True
    mode: Literal["fast", "slow"] = "fast"
    label: int | None = None
    inner: Inner = field(default_factory=Inner)
    items: list[Item] = field(default_factory=list)
    extra: dict[str, dict] = field(default_factory=dict)


def test_defaults_and_nested_values():
    cfg = load(Outer, {"inner": {"rate": 2, "shape": [3, 4]}, "items": [{"id": "a"}]})
    assert cfg == Outer(inner=Inner(rate=2.0, shape=(3, 4)), items=[Item("a")])
    assert type(cfg.inner.rate) is float and type(cfg.inner.shape) is tuple
    assert load(Outer, {}) == Outer()


def test_yaml11_float_strings_go_into_float_fields_only():
    assert load(Outer, yaml.safe_load("inner: {rate: 3e-4}")).inner.rate == 3e-4
    with pytest.raises(ConfigTypeError, match=r"seed: expected int"):
        load(Outer, {"seed": "3e4"})
    assert load(Outer, {"name": "1e3"}).name == "1e3"


def test_unknown_keys_at_any_depth_are_listed_with_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        load(Outer, {"sed": 1, "inner": {"rat": 1}, "items": [{"id": "a", "kw": {}}]})
    msg = str(e.value)
    assert "unknown key(s) ['sed'] in Outer; valid: ['extra', 'inner'," in msg
    assert "unknown key(s) ['inner.rat'] in Outer; valid: ['inner.clip', 'inner.rate'," in msg
    assert "unknown key(s) ['items[0].kw'] in Outer; valid: ['items[0].id'," in msg
    # dict-typed fields take any key
    assert load(Outer, {"items": [{"id": "a", "kwargs": {"x": 1}}]}).items[0].kwargs == {"x": 1}
    assert "inner.rate" in valid_keys(Outer) and "inner" in valid_keys(Outer)


@pytest.mark.parametrize(
    "data, match",
    [
        ({"seed": "3"}, r"seed: expected int, got '3'"),
        ({"seed": True}, r"seed: expected int, got True"),
        ({"seed": 1.5}, r"seed: expected int, got 1.5"),
        ({"name": 3}, r"name: expected str, got 3"),
        ({"verbose": 1}, r"verbose: expected bool, got 1"),
        ({"mode": "medium"}, r"mode: expected Literal\['fast', 'slow'\], got 'medium'"),
        ({"inner": {"widths": [8, "x"]}}, r"inner\.widths\[1\]: expected int, got 'x'"),
        ({"inner": {"rate": None}}, r"inner\.rate: expected float, got None"),
        ({"inner": 3}, r"inner: expected Inner, got 3"),
        ({"items": [{"kwargs": {}}]}, r"items\[0\]\.id: missing required key"),
        ({"label": "a"}, r"label: expected int \| None"),
    ],
)
def test_wrong_types_name_the_key_and_the_expected_type(data, match):
    with pytest.raises(ConfigTypeError, match=match) as e:
        load(Outer, data)
    assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)


def test_post_init_checks_come_out_as_value_errors():
    with pytest.raises(ConfigError, match=r"Outer: inner: rate must be >= 0, got -1.0"):
        load(Outer, {"inner": {"rate": -1}})


def test_overrides():
    cfg = load(Outer, {"seed": 1}, ["seed=2", "inner.widths=[4, 4]", "inner.clip=0.5"])
    assert (cfg.seed, cfg.inner.widths, cfg.inner.clip) == (2, [4, 4], 0.5)
    cfg = load(Outer, {"inner": {"clip": 0.5}}, ["inner.clip=null", "label=3"])
    assert cfg.inner.clip is None and cfg.label == 3
    cfg = load(Outer, {}, ["extra.ppo.n_steps=8", "name=a=b"])  # dict fields are free
    assert cfg.extra == {"ppo": {"n_steps": 8}} and cfg.name == "a=b"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['inner.rat'\].*valid: \['inner"):
        load(Outer, {}, ["inner.rat=1"])
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        load(Outer, {}, ["seed.x=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load(Outer, {}, ["seed"])
    with pytest.raises(ConfigTypeError, match="seed: expected int"):
        load(Outer, {}, ["seed=abc"])


def test_apply_overrides_returns_a_new_dict():
    data = {"a": {"b": 1}, "c": [1]}
    out = apply_overrides(data, ["a.b=2", "d.e=null", "c=[1, 2]"])
    assert out == {"a": {"b": 2}, "c": [1, 2], "d": {"e": None}}
    assert data == {"a": {"b": 1}, "c": [1]}
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(data, ["c.x=1"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sed'\]"):
        apply_overrides({}, ["sed=1"], Outer)


def test_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 4\ninner:\n  rate: 1\n")
    assert load(Outer, path).seed == 4 and load(Outer, str(path)).inner.rate == 1.0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(Outer, tmp_path / "missing.yaml")
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigTypeError, match="c.yaml must be a YAML mapping"):
        load(Outer, path)
    path.write_text("")
    assert load(Outer, path) == Outer()
    path.write_text("sed: 1\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sed'\] in c.yaml"):
        load(Outer, path)


def test_to_dict_round_trip():
    cfg = Outer(inner=Inner(shape=(1, 2), clip=0.25), items=[Item("x", {"k": [1]})])
    plain = to_dict(cfg)
    assert plain["inner"]["shape"] == [1, 2] and plain["items"] == [
        {"id": "x", "kwargs": {"k": [1]}}
    ]
    assert load(Outer, plain) == cfg
