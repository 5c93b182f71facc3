"""[IMG] token helpers (elmd.heads.sticker.tokens): finding the run, row-only training, GILL's forced run."""

from __future__ import annotations

import torch

from elmd.heads.sticker.tokens import ImgRunForcer, gather_run, img_run_start, img_token_names, train_only_rows


def test_names_and_run_start():
    assert img_token_names(3) == ["[IMG1]", "[IMG2]", "[IMG3]"]
    ids = torch.tensor([[5, 1, 2, 3, 9], [1, 2, 9, 9, 9], [1, 2, 3, 1, 2]])
    assert img_run_start(ids, [1, 2, 3]).tolist() == [1, -1, 0]
    assert img_run_start(ids[:, :2], [1, 2, 3]).tolist() == [-1, -1, -1]


def test_gather_run():
    hidden = torch.arange(2 * 5 * 1, dtype=torch.float).reshape(2, 5, 1)
    got = gather_run(hidden, torch.tensor([1, -1]), 3)
    assert got[0, :, 0].tolist() == [1.0, 2.0, 3.0] and got[1].abs().sum() == 0


def test_train_only_rows():
    emb = torch.nn.Embedding(5, 2)
    before = emb.weight.detach().clone()
    emb.weight.requires_grad_(False)
    handle = train_only_rows(emb.weight, [3, 4])
    opt = torch.optim.SGD([emb.weight], lr=0.1)
    emb(torch.arange(5)).pow(2).sum().backward()
    assert emb.weight.grad[:3].abs().sum() == 0 and emb.weight.grad[3:].abs().sum() > 0
    opt.step()
    assert torch.equal(emb.weight[:3], before[:3]) and not torch.equal(emb.weight[3:], before[3:])
    handle.remove()


def test_forcer_forbids_and_forces_the_run():
    f = ImgRunForcer([10, 11, 12], batch_size=2)
    logits = torch.zeros(2, 13)
    masked = f.logits(logits)
    assert torch.isinf(masked[:, 11:13]).all() and torch.isfinite(masked[:, :11]).all()
    assert f.step(torch.tensor([10, 4])).tolist() == [10, 4]  # row 0 starts a run
    masked = f.logits(logits)
    assert torch.isfinite(masked[0]).all() and torch.isinf(masked[1, 11:]).all()  # inside a run nothing is masked
    assert f.step(torch.tensor([7, 10])).tolist() == [11, 10]  # row 0 forced; row 1 starts its run
    assert f.step(torch.tensor([7, 3])).tolist() == [12, 11]
    assert f.step(torch.tensor([7, 3])).tolist() == [7, 12]  # row 0 free again, row 1 finishes
    assert f.pos.tolist() == [0, 0]


def test_forcer_with_one_token():
    f = ImgRunForcer([10], batch_size=1)
    assert torch.isfinite(f.logits(torch.zeros(1, 11))).all()
    assert f.step(torch.tensor([10])).tolist() == [10] and f.pos.tolist() == [0]
