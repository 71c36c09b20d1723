"""Find and load ImageNet weights from the user's disk; download only when asked to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from dcsm_lightning.errors import with_hint
from dcsm_lightning.models.backbones import VGGFCN, load_torchvision_vgg16

#: File name torchvision gives VGG-16's ImageNet weights in torch's hub cache.
VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILENAME}"

_HOW_TO = (
    "Supply {what} in one of these ways:\n"
    "  1. download {url} on a machine with internet and pass its path:\n"
    "     --model.pretrained=/path/to/{filename}\n"
    "  2. put that file in torch's hub cache ({cache}) and pass --model.pretrained=hub-cache\n"
    "  3. let torchvision download it now: --model.allow_download=true"
)


def _download_vgg16() -> dict[str, torch.Tensor]:
    from torchvision.models import VGG16_Weights

    return VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)


def hub_cache_file(filename: str = VGG16_FILENAME) -> Path:
    """Where torchvision keeps (or would keep) a weights file: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors all mean "not a weights file"
        raise ValueError(f"cannot read weights file {path}: {err}") from err
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return obj


def resolve_weights(
    pretrained: str,
    allow_download: bool = False,
    url: str = VGG16_URL,
    what: str = "VGG-16 ImageNet weights",
    download: Callable[[], dict[str, torch.Tensor]] = _download_vgg16,
) -> dict[str, torch.Tensor]:
    """Return a state dict for ``pretrained``: a file path or ``"hub-cache"``.

    Args:
        pretrained: a weights file (a state dict, or a checkpoint holding ``state_dict``) or
            ``"hub-cache"``: the file named like ``url`` in torch's hub cache.
        allow_download: call ``download`` when the hub cache lacks the file.
        url, what, download: the weights torchvision would fetch (default VGG-16 ImageNet).

    Raises:
        FileNotFoundError: the file is absent; the message says how to supply it.
    """
    filename = url.rsplit("/", 1)[-1]
    cache = hub_cache_file(filename)
    how_to = _HOW_TO.format(what=what, url=url, filename=filename, cache=cache)
    hint = (
        f"download {url} and pass --model.init_args.pretrained=/path/to/{filename}, put it in "
        f"{cache.parent} (pretrained=hub-cache), or add --model.init_args.allow_download=true"
    )
    if pretrained == "hub-cache":
        if cache.is_file():
            return _read_state_dict(cache)
        if allow_download:
            return download()
        raise with_hint(
            FileNotFoundError(f"pretrained='hub-cache' but {cache} does not exist.\n{how_to}"), hint
        )
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise with_hint(
            FileNotFoundError(f"pretrained weights file {path} does not exist.\n{how_to}"), hint
        )
    return _read_state_dict(path)


def load_pretrained(model: nn.Module, pretrained: str, allow_download: bool = False) -> None:
    """Load ``pretrained`` into ``model``: torchvision VGG-16 keys are mapped, our own keys load as
    they are (the class-score layer is kept random when its size differs).
    """
    state = resolve_weights(pretrained, allow_download)
    if isinstance(model, VGGFCN) and any(k.startswith("classifier.") for k in state):
        load_torchvision_vgg16(model, state)
        return
    prefix = "backbone."  # a MultiLabelFCN checkpoint holds the backbone under this name
    if state and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items()}
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(
            f"weights in {pretrained!r} do not fit this backbone; unexpected keys: {unknown[:5]}"
        )
    fitting = {
        k: v for k, v in state.items() if v.shape == own[k].shape or not k.startswith("score.")
    }
    model.load_state_dict(fitting, strict=False)
