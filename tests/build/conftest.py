"""Fixtures shared by the tests/build/test_fastload*.py files."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """get(arch_id, variant="fp32" | "fp16") -> path of a nudged safetensors file, made once."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from fastload_archs import BY_ID, FILE_CLASSES, _state_for_file

    cache: dict[tuple[str, str], str] = {}
    root = tmp_path_factory.mktemp("weights")

    def get(arch_id: str, variant: str = "fp32") -> str:
        key = (arch_id, variant)
        if key not in cache:
            arch = BY_ID[arch_id]
            torch.manual_seed(0)
            sd = _state_for_file(
                arch.make(FILE_CLASSES), torch.float16 if variant == "fp16" else None
            )
            path = str(root / f"{arch_id}-{variant}.safetensors")
            safetensors_torch.save_file(sd, path)
            cache[key] = path
        return cache[key]

    return get
