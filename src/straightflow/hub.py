"""The Hugging Face Hub: push an exported model, load one (``pip install 'straightflow[hub]'``; ``docs/portable.md``).

Thin wrappers around ``huggingface_hub`` (imported inside the functions that use it):
:func:`push_to_hub` uploads an export folder (``straightflow export``) as it is, and
:func:`from_pretrained` loads one from a Hub repo id or a local folder through
``huggingface_hub``'s ``ModelHubMixin`` (which reads ``config.json``; a repo id is
fetched with ``snapshot_download``) and returns a :class:`~straightflow.Run`.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import EXPORT_CONFIG, EXPORT_WEIGHTS, is_export, load_export_weights, read_export_config
from .errors import StraightflowError
from .run import Run

#: what an export folder uploads (other files in the folder stay local)
HUB_FILES = [EXPORT_WEIGHTS, EXPORT_CONFIG, "README.md"]


def _huggingface_hub():
    try:
        import huggingface_hub
    except ImportError:
        raise StraightflowError("the Hugging Face Hub needs huggingface_hub: pip install 'straightflow[hub]'") from None
    return huggingface_hub


def hub_model_class():
    """A ``huggingface_hub.ModelHubMixin`` whose ``from_pretrained(repo_id_or_dir)`` returns a :class:`Run`."""
    hf = _huggingface_hub()

    class StraightflowModel(hf.ModelHubMixin, library_name="straightflow", tags=["straightflow", "flow-matching"]):
        """Loads straightflow exports; ``from_pretrained`` returns the loaded :class:`~straightflow.Run`."""

        def __init__(self):  # no keywords: the mixin passes config.json's keys only to _from_pretrained's ``config``
            super().__init__()

        @classmethod
        def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download, local_files_only, token,
                             config: dict | None = None, device: str = "auto") -> Run:
            folder = Path(model_id)
            if not folder.is_dir():
                folder = Path(hf.snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir,
                                                   force_download=force_download, local_files_only=local_files_only,
                                                   token=token, allow_patterns=HUB_FILES))
            if config is None:  # the mixin found no config.json
                raise StraightflowError(f"{model_id} is not a straightflow export: it has no {EXPORT_CONFIG}")
            return Run.load_export(folder, device=device, config=config)

    return StraightflowModel


def _is_repo_id(text: str) -> bool:
    """``name`` or ``owner/name`` (what the Hub takes), as opposed to a path on this machine."""
    parts = text.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


def from_pretrained(repo_id_or_dir: str | Path, device: str = "auto", revision: str | None = None,
                    cache_dir: str | Path | None = None, token: str | bool | None = None,
                    local_files_only: bool = False) -> Run:
    """An exported model from a local folder or a Hub repo id (downloaded into the Hub cache), ready to sample."""
    text = str(repo_id_or_dir)
    local = Path(text).is_dir()
    if not local and (isinstance(repo_id_or_dir, Path) or not _is_repo_id(text)):
        raise StraightflowError(f"{text} is neither a folder nor a Hub repo id (owner/name)")
    model = hub_model_class()
    if local:  # huggingface_hub reads config.json; nothing is downloaded
        return model.from_pretrained(text, device=device)
    hf = _huggingface_hub()
    try:
        return model.from_pretrained(text, revision=revision, cache_dir=cache_dir, token=token,
                                     local_files_only=local_files_only, device=device)
    except (OSError, ValueError, hf.errors.EntryNotFoundError) as exc:  # network, missing repo or file, bad id
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StraightflowError(f"could not fetch {text} from the Hugging Face Hub: {first}") from None


def push_to_hub(export_dir: str | Path, repo_id: str, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload straightflow model", revision: str | None = None) -> str:
    """Upload an export folder to the Hub repo ``repo_id`` (created if missing); returns the commit URL.
    The folder is checked first (config.json, the weights' sha256), so a broken export is never pushed."""
    folder = Path(export_dir)
    if not is_export(folder):
        raise StraightflowError(f"{folder} is not an exported model (no {EXPORT_CONFIG}): run `straightflow export RUN "
                                "--out DIR` first")
    load_export_weights(folder, read_export_config(folder))
    hf = _huggingface_hub()
    api = hf.HfApi(token=token)
    repo = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=getattr(repo, "repo_id", repo_id), repo_type="model", folder_path=str(folder),
                               commit_message=commit_message, revision=revision, allow_patterns=HUB_FILES)
    return str(getattr(commit, "commit_url", commit))
