"""Loading SD's parts: sha256 check of the shipped weights, one-line offline error for a hub id."""

import time

import pytest

from fromscratch.diffusion import parts
from fromscratch.diffusion.parts import ModelNotAvailableError, check_sha256, load_parts, sha256_of


def test_sha256_check_accepts_the_right_file_and_names_the_fix_otherwise(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"some weights")
    check_sha256(path, sha256_of(path))
    with pytest.raises(ValueError, match=r"expected .*python -m fromscratch\.diffusion\.train") as error:
        check_sha256(path, "0" * 64)
    assert "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match=r"missing; make it with `python -m fromscratch\.diffusion"):
        check_sha256(tmp_path / "absent.safetensors", "0" * 64)


def test_mini_loader_refuses_a_tampered_file(tmp_path):
    tampered = tmp_path / "mini_sd.safetensors"
    tampered.write_bytes(b"not the trained weights")
    with pytest.raises(ValueError, match="sha256"):
        load_parts("mini", device="cpu", weights=tampered)


def test_shipped_mini_weights_match_their_sha256():
    if not parts.MINI_SD_PATH.is_file():
        pytest.skip("data/mini_sd.safetensors not trained yet")
    assert sha256_of(parts.MINI_SD_PATH) == parts.MINI_SD_SHA256


def test_offline_hub_id_fails_in_one_line_naming_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(ModelNotAvailableError) as error:
        load_parts("CompVis/stable-diffusion-v1-4", device="cpu", local_files_only=True)
    message = str(error.value)
    assert "\n" not in message and "CompVis/stable-diffusion-v1-4" in message
    assert "hf download" in message and "local_files_only=True" in message
    assert "HF_HUB_OFFLINE" not in message  # never suggest unsetting a variable that is not set


def test_hf_hub_offline_is_named_only_when_set(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotAvailableError, match="HF_HUB_OFFLINE is set") as error:
        load_parts("fromscratch-tests/no-such-model", device="cpu")
    assert "\n" not in str(error.value)


def test_unreachable_hub_fails_fast_in_one_line(monkeypatch):
    """Without HF_HUB_OFFLINE and without network: one short probe, not minutes of retries."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="cannot be reached") as error:
        load_parts("fromscratch-tests/no-such-model", device="cpu")
    assert time.perf_counter() - start < parts.HUB_PROBE_SECONDS + 10
    message = str(error.value)
    assert "\n" not in message and "fromscratch-tests/no-such-model" in message
    assert "HF_HUB_OFFLINE" not in message and "hf download" in message


@pytest.mark.parametrize("folder", ["/no/such/diffusers-folder", "./missing-sd", "a/b/c"])
def test_missing_local_folder_is_reported_as_missing(folder):
    with pytest.raises(FileNotFoundError, match="does not exist") as error:
        load_parts(folder, device="cpu")
    assert "cache" not in str(error.value)


def test_a_file_or_an_incomplete_folder_is_not_a_model(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file"):
        load_parts(str(tmp_path / "weights.bin"), device="cpu")
    with pytest.raises(ModelNotAvailableError, match="not a complete diffusers folder") as error:
        load_parts(str(tmp_path), device="cpu")
    assert "\n" not in str(error.value)


def test_bad_model_argument():
    with pytest.raises(TypeError, match="model must be"):
        load_parts("", device="cpu")
