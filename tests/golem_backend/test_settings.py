"""BackendSettings validation: bad values fail at start-up with a message naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from golem_backend.settings import BackendSettings

HASH = "d646d7b93083d817846c2ae5c62c72ca0507782385a2e29291a3d376"


def settings(tmp_path: Path, **values: object) -> BackendSettings:
    values.setdefault("data_dir", tmp_path / "data")
    return BackendSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_are_valid(tmp_path):
    s = settings(tmp_path, backend="golem")
    assert s.golem_script_timeout_s < s.request_timeout_s
    assert s.dataset_dir is None and s.golem_image_hash is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"golem_script_timeout_s": 30, "request_timeout_s": 30}, "must be less than"),
        ({"golem_script_timeout_s": 40}, "GOLEM_SCRIPT_TIMEOUT_S \\(40\\)"),
        ({"golem_start_timeout_s": 7200}, "less than or equal to 1800"),
        ({"golem_expiration_min": 60 * 24 * 30}, "less than or equal to 1440"),
        ({"golem_budget_glm": 1e6}, "less than or equal to 1000"),
        ({"golem_image_hash": "abc"}, "56 hex digits"),
        ({"golem_image_hash": "z" * 56}, "56 hex digits"),
        ({"golem_image_hash": HASH + "00"}, "56 hex digits"),
        ({"yagna_api_url": "127.0.0.1:7465"}, "not an http\\(s\\) URL"),
        ({"yagna_api_url": "ftp://127.0.0.1"}, "not an http\\(s\\) URL"),
        ({"yagna_api_url": "http://"}, "not an http\\(s\\) URL"),
    ],
)
def test_bad_golem_values_are_refused(tmp_path, values, message):
    with pytest.raises(ValidationError, match=message):
        settings(tmp_path, backend="golem", **values)


def test_script_timeout_is_checked_only_for_the_golem_backend(tmp_path):
    s = settings(tmp_path, backend="local", request_timeout_s=10)
    assert s.golem_script_timeout_s == 20


def test_good_golem_values_are_normalised(tmp_path):
    s = settings(
        tmp_path,
        backend="golem",
        golem_image_hash=f" {HASH.upper()} ",
        yagna_api_url="https://yagna.example:7465/",
    )
    assert s.golem_image_hash == HASH
    assert s.yagna_api_url == "https://yagna.example:7465/"
    assert settings(tmp_path, golem_image_hash="").golem_image_hash is None


def test_dataset_dir_must_be_an_existing_folder(tmp_path):
    with pytest.raises(ValidationError, match=r"DATASET_DIR .* is not an existing folder"):
        settings(tmp_path, dataset_dir=tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="is not an existing folder"):
        settings(tmp_path, dataset_dir=tmp_path / "file")
    assert settings(tmp_path, dataset_dir=tmp_path).dataset_dir == tmp_path
    assert settings(tmp_path, dataset_dir="").dataset_dir is None  # DATASET_DIR= in .env


def test_data_dir_must_be_a_folder_that_can_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match=r"DATA_DIR .* is not a folder"):
        settings(tmp_path, data_dir=tmp_path / "file")
    with pytest.raises(ValidationError, match="cannot be created"):
        settings(tmp_path, data_dir=tmp_path / "file" / "data")
    s = settings(tmp_path, data_dir=tmp_path / "new" / "deep")
    assert not s.data_dir.exists()  # validation does not create it


def test_values_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKEND", "golem")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REQUEST_TIMEOUT_S", "10")
    with pytest.raises(ValidationError, match="GOLEM_SCRIPT_TIMEOUT_S"):
        BackendSettings(_env_file=None)  # type: ignore[call-arg]


def test_golem_may_scale_to_zero(tmp_path):
    s = settings(tmp_path, golem_min_instances=0)
    assert (s.min_instances, s.max_instances) == (0, 1)
    s = settings(tmp_path, golem_min_instances=0, golem_max_instances=4)
    assert (s.min_instances, s.max_instances) == (0, 4)
    assert settings(tmp_path, golem_instances=3).min_instances == 3  # unset: GOLEM_INSTANCES
    with pytest.raises(ValidationError, match="golem_min_instances"):
        settings(tmp_path, golem_min_instances=-1)


def test_the_image_hash_may_keep_gvmkit_builds_prefix(tmp_path):
    assert settings(tmp_path, golem_image_hash=f"sha3:{HASH}").golem_image_hash == HASH
    assert settings(tmp_path, golem_image_hash=f" SHA3:{HASH.upper()} ").golem_image_hash == HASH
    with pytest.raises(ValidationError, match="56 hex digits"):
        settings(tmp_path, golem_image_hash=f"sha256:{HASH}")


def test_an_empty_appkey_file_setting_is_unset(tmp_path):
    assert settings(tmp_path, yagna_appkey_file="").yagna_appkey_file is None
    path = tmp_path / "key"
    assert settings(tmp_path, yagna_appkey_file=str(path)).yagna_appkey_file == path
