"""Config validation: shipped configs are valid; a malformed one fails naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from labelleak.config import check_paths, config_hash, load_config, validate_config
from labelleak.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    load_config(path)


@pytest.fixture
def cfg():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["training"].update(lr=-1), "training.lr"),
        (lambda c: c["training"].update(lr="fast"), "training.lr"),
        (lambda c: c["sampling"].update(num_batches=2.5), "sampling.num_batches"),
        (lambda c: c["sampling"].update(composition="sorted"), "sampling.composition"),
        (lambda c: c["training"].update(learning_rate=0.1), "training.learning_rate"),
        (lambda c: c.update(tabel1={}), "tabel1"),
        (lambda c: c["sampling"].pop("num_batches"), "sampling.num_batches"),
        (lambda c: c["models"]["resnet50"].update(arch="resnet18"), "models.resnet50.arch"),
        (lambda c: c["table1"].update(models=["vgg"]), "table1.models.0"),
        (lambda c: c["table1"].update(stage="finetuned"), "table1.stage"),
        (lambda c: c["table1"].update(dataset="cifar"), "table1.dataset"),
        (lambda c: c["datasets"]["synth1000"].pop("num_classes"), "datasets.synth1000.num_classes"),
    ],
)
def test_malformed_config_names_the_key(cfg, edit, key):
    bad = copy.deepcopy(cfg)
    edit(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    msg = str(err.value)
    assert f"'{key}'" in msg and "\n" not in msg


def test_missing_dataset_path_is_one_line_naming_path_and_layout(cfg, tmp_path):
    cfg["datasets"]["imagenet"] = {"kind": "imagenet_val", "root": str(tmp_path / "nowhere"),
                                   "labels_file": str(tmp_path / "labels.txt")}
    validate_config(cfg)
    with pytest.raises(ConfigError) as err:
        check_paths(cfg)
    assert "nowhere" in str(err.value) and "ILSVRC2012_val_" in str(err.value) and "\n" not in str(err.value)


def test_unreadable_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_config_hash_tracks_settings(cfg):
    other = copy.deepcopy(cfg)
    assert config_hash(cfg) == config_hash(copy.deepcopy(cfg))
    other["seed"] = 1
    assert config_hash(cfg) != config_hash(other)
