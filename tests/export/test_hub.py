"""The ``hub`` extra (docs/portable.md): an export loads through huggingface_hub's local API, and
push / from_pretrained call the Hub as they should. Nothing here touches the network: remote calls are mocked."""

import json
from pathlib import Path

import pytest
import torch

hf = pytest.importorskip("huggingface_hub")

import straightflow as sf  # noqa: E402
from straightflow.cli.main import main  # noqa: E402
from straightflow.errors import StraightflowError  # noqa: E402
from straightflow.export import export  # noqa: E402
from straightflow.hub import HUB_FILES, from_pretrained, hub_model_class, push_to_hub  # noqa: E402
from straightflow.methods import build_module  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    run_dir = sf.train(data="moons", out=str(root / "run"), steps=20, width=32, depth=2, batch_size=64, log_every=10,
                       progress=False)
    export(run_dir, root / "model")
    (root / "model" / "notes.txt").write_text("a local file that is not part of the model")
    return root / "model"


def test_the_export_loads_through_huggingface_hubs_local_api(exported):
    expected = sf.load(exported, device="cpu").sample(64, nfe=2, seed=5).samples
    run = hub_model_class().from_pretrained(str(exported), device="cpu")  # ModelHubMixin reads config.json
    assert isinstance(run, sf.Run) and run.exported and torch.equal(run.sample(64, nfe=2, seed=5).samples, expected)
    assert torch.equal(from_pretrained(exported, device="cpu").sample(64, nfe=2, seed=5).samples, expected)
    # the safetensors file loads into freshly built networks with huggingface_hub's own loader, every key matched
    fresh, _, _ = build_module(run.cfg, run.data)
    result = hf.load_torch_model(fresh, exported, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), run.module.state_dict().values()))
    card = hf.ModelCard.load(exported / "README.md")
    assert (card.data.library_name == "straightflow" and "straightflow" in card.data.tags
            and "rectified" in card.data.tags)


def test_from_pretrained_downloads_a_repo_id_with_the_hub_client(exported, monkeypatch):
    calls = []

    def fake_hf_hub_download(repo_id, filename, **kwargs):
        calls.append(("config", repo_id, filename))
        return str(exported / filename)

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append(("snapshot", repo_id, tuple(kwargs["allow_patterns"]), kwargs["revision"]))
        return str(exported)

    monkeypatch.setattr("huggingface_hub.hub_mixin.hf_hub_download", fake_hf_hub_download)
    monkeypatch.setattr(hf, "snapshot_download", fake_snapshot_download)
    run = from_pretrained("someone/moons-model", device="cpu", revision="v1")
    assert calls == [("config", "someone/moons-model", "config.json"),
                     ("snapshot", "someone/moons-model", tuple(HUB_FILES), "v1")]
    assert torch.equal(run.sample(8, nfe=1).samples, sf.load(exported, device="cpu").sample(8, nfe=1).samples)

    def offline(repo_id, **kwargs):
        raise hf.errors.LocalEntryNotFoundError("no cached copy and the Hub cannot be reached")

    monkeypatch.setattr(hf, "snapshot_download", offline)
    with pytest.raises(StraightflowError,
                       match="could not fetch someone/moons-model from the Hugging Face Hub: no cached copy"):
        from_pretrained("someone/moons-model")
    with pytest.raises(StraightflowError, match="is neither a folder nor a Hub repo id"):
        from_pretrained("./no/such/folder")


class FakeApi:
    """Records what push_to_hub asks of huggingface_hub.HfApi."""

    calls: list = []

    def __init__(self, token=None):
        FakeApi.calls.append(("init", token))

    def create_repo(self, repo_id, repo_type, private, exist_ok):
        FakeApi.calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, repo_type, folder_path, commit_message, revision, allow_patterns):
        FakeApi.calls.append(("upload_folder", repo_id, repo_type, Path(folder_path), commit_message,
                              list(allow_patterns)))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def test_push_uploads_the_export_folder_as_it_is(exported, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(hf, "HfApi", FakeApi)
    FakeApi.calls = []
    assert push_to_hub(exported, "me/moons") == "https://huggingface.co/me/moons/commit/abc"
    assert FakeApi.calls == [("init", None), ("create_repo", "me/moons", "model", None, True),
                             ("upload_folder", "me/moons", "model", exported, "Upload straightflow model", HUB_FILES)]
    FakeApi.calls = []
    assert main(["push", str(exported), "me/moons", "--private", "--message", "first model"]) == 0
    assert "pushed to me/moons (https://huggingface.co/me/moons/commit/abc)" in capsys.readouterr().out
    assert FakeApi.calls[1] == ("create_repo", "me/moons", "model", True, True) and FakeApi.calls[2][4] == "first model"
    # a folder that is not a whole export is refused before the Hub is called
    FakeApi.calls = []
    assert main(["push", str(tmp_path), "me/moons"]) == 2
    assert ("is not an exported model (no config.json): run `straightflow export RUN --out DIR` first"
            in capsys.readouterr().err)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in HUB_FILES:
        (broken / name).write_bytes((exported / name).read_bytes())
    config = json.loads((broken / "config.json").read_text())
    config["weights"]["sha256"] = "0" * 64
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(StraightflowError, match="its sha256 differs from the one recorded in config.json"):
        push_to_hub(broken, "me/moons")
    assert FakeApi.calls == []
