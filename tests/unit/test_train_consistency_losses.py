"""The training options that target flicker and grid artefacts: the differentiable Lucas–Kanade
flow, the flow-cycle loss built on it, and the shift-equivariance loss."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tiny_train import flow_cache_in_tmp, tiny_config  # noqa: F401  (an autouse fixture)
from torch import nn
from vst.train.lk_flow import flow_cycle_loss, lucas_kanade
from vst.train.losses import edge_colours, noise_loss, paste_edges, ringing_loss, sensor_noise, shift_loss, step_edges, texture_loss

from vst.flow import read_flo


def _sintel_quarter(data: type, level: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Sintel frames 2, 3 at 1/4 size (about the training size) in [-1, 1], GT flow 2->3 and occlusion."""
    root = data("flow", "sintel_clean", level)
    rgb = [cv2.cvtColor(cv2.imread(str(root / f"frame_000{i}.png")), cv2.COLOR_BGR2RGB) for i in (2, 3)]
    h, w = rgb[0].shape[0] // 4, rgb[0].shape[1] // 4
    small = [cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in rgb]
    t = [torch.from_numpy(x).float().permute(2, 0, 1)[None] / 127.5 - 1 for x in small]
    gt = cv2.resize(read_flo(root / "gt" / "frame_0002.flo"), (w, h), interpolation=cv2.INTER_AREA) / 4
    occ = cv2.imread(str(root / "gt" / "occlusions" / "frame_0002.png"), cv2.IMREAD_GRAYSCALE)
    return t[0], t[1], gt, cv2.resize(occ, (w, h)) > 0


@pytest.mark.parametrize(("level", "bound"), [("easy", 0.35), ("medium", 0.8)])
def test_lucas_kanade_recovers_sintel_ground_truth(data: type, level: str, bound: float) -> None:
    a, b, gt, occ = _sintel_quarter(data, level)
    flow = lucas_kanade(a, b)[0].permute(1, 2, 0).numpy()
    epe = np.linalg.norm(flow - gt, axis=-1)[~occ].mean()
    zero = np.linalg.norm(gt, axis=-1)[~occ].mean()
    assert epe < bound and epe < 0.5 * zero, (epe, zero)


def test_flow_cycle_loss_is_zero_for_perfect_reconstructions_and_has_gradients(data: type) -> None:
    a, b, _, occ = _sintel_quarter(data, "easy")
    mask = torch.from_numpy(~occ).float()[None, None]
    assert float(flow_cycle_loss(a, b, a, b, mask)) == pytest.approx(0.0, abs=1e-6)
    rec_b = b.clone().requires_grad_(True)
    shifted = torch.roll(a, shifts=2, dims=-1)  # a reconstruction that moved the content by 2 px
    loss = flow_cycle_loss(shifted, rec_b, a, b, mask)
    assert float(loss) > 0.3
    loss.backward()
    assert rec_b.grad is not None and bool(torch.isfinite(rec_b.grad).all()) and float(rec_b.grad.abs().sum()) > 0


class _GridLocked(nn.Module):
    """A 3x3 conv plus a fixed period-2 pattern anchored to the pixel grid, as a stride-2 net paints."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        yy, xx = torch.meshgrid(torch.arange(x.shape[-2]), torch.arange(x.shape[-1]), indexing="ij")
        return self.conv(x) + 0.2 * ((yy + xx) % 2).float()


def test_shift_loss_sees_grid_locked_patterns_not_equivariant_nets() -> None:
    x = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    net = _GridLocked()
    with torch.no_grad():
        plain = shift_loss(net.conv, x, net.conv(x), 1, 2)
        locked_odd = shift_loss(net, x, net(x), 1, 2)  # odd total shift: the pattern flips sign
        locked_even = shift_loss(net, x, net(x), 1, 1)  # even: the pattern lands on itself
    assert float(plain) < 1e-5
    assert float(locked_odd) == pytest.approx(0.2, abs=1e-4)
    assert float(locked_even) < 1e-5


def test_noise_loss_is_what_the_net_passes_through() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 24, 32, generator=gen) * 2 - 1
    noise = torch.randn(x.shape, generator=gen) * 0.04
    identity = nn.Identity()
    flat = nn.Sequential(nn.AvgPool2d(8), nn.Upsample(scale_factor=8))  # averages most of the noise away
    assert float(noise_loss(identity, x, x, noise)) == pytest.approx(float(noise.abs().mean()), rel=1e-6)
    assert float(noise_loss(flat, x, flat(x), noise)) < 0.2 * float(noise.abs().mean())


def test_sensor_noise_has_its_sigma_and_blur_correlates_neighbours() -> None:
    """blur 0: independent per pixel; blur 2 px: neighbours share most of it; both at std sigma."""
    for blur, low, high in ((0.0, -0.05, 0.05), (2.0, 0.85, 1.0)):
        n = sensor_noise((2, 3, 64, 96), 0.04, blur, torch.Generator().manual_seed(3))
        assert float(n.std()) == pytest.approx(0.04, rel=0.03)
        corr = float((n[..., 1:] * n[..., :-1]).mean() / n.var())  # horizontal lag-1 autocorrelation
        assert low < corr < high, (blur, corr)


def test_step_edges_are_two_flat_colours_split_at_the_signed_distance() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 20, 30, generator=gen) * 2 - 1
    colours = edge_colours(x, gen)
    assert colours.shape == (3, 2, 3)
    assert bool((colours[:, 0].mean(1) <= colours[:, 1].mean(1)).all())  # the darker one first
    img, dist = step_edges(colours, gen)
    assert img.shape == (3, 3, 96, 96) and dist.shape == (3, 1, 96, 96)
    for side, k in ((dist < -3, 0), (dist > 3, 1)):
        want = colours[:, k, :, None, None].expand_as(img)
        m = side.expand_as(img)
        assert torch.allclose(img[m], want[m], atol=1e-3)


def test_ringing_loss_sees_edge_locked_swings_not_colour_maps_or_texture() -> None:
    """A colour map of clean edges scores ~0, texture that is not locked to the edge little, an
    unsharp mask (the overshoot and halo of an outline) and a damped ripple along the edge much more."""
    from vst.warp import gaussian_blur

    gen = torch.Generator().manual_seed(4)
    colours = edge_colours(torch.rand(4, 3, 16, 16, generator=gen) * 2 - 1, gen)
    img, dist = step_edges(colours, gen)
    texture = 0.15 * gaussian_blur(torch.randn(img.shape, generator=gen), 1.0)
    ripple = 0.3 * torch.exp(-dist.abs() / 5) * torch.cos(dist * (torch.pi / 2))  # period 4 px, like the nets'
    scores = {name: float(ringing_loss(out, dist)) for name, out in {
        "colour map": torch.tanh(1.5 * img) * 0.8 + 0.1,
        "texture": img + texture,
        "unsharp": img + 1.5 * (img - gaussian_blur(img, 3.0)),
        "ripple": img + ripple,
    }.items()}  # fmt: skip
    assert scores["colour map"] < 1e-3
    soft, soft_dist = step_edges(colours, gen, max_sigma=3.0)  # soft edges: the distance starts past the blur
    assert float(ringing_loss(torch.tanh(1.5 * soft), soft_dist)) < 2e-3
    assert float(soft_dist.abs().min()) == 0.0 and float((soft_dist == 0).float().mean()) > 0.02
    assert scores["texture"] < 0.012
    assert scores["unsharp"] > 3 * scores["texture"] and scores["ripple"] > 3 * scores["texture"]


def test_pasted_edges_keep_the_frame_around_them_and_count_only_inside() -> None:
    gen = torch.Generator().manual_seed(5)
    frames = torch.rand(2, 3, 100, 150, generator=gen) * 2 - 1
    edges, dist = step_edges(edge_colours(frames, gen), gen)
    images, full, valid = paste_edges(frames, edges, dist, gen)
    inside = full < 1e3
    assert int(inside.sum()) == 2 * 96 * 96 and int(valid.sum()) == 2 * 80 * 80
    assert bool((valid <= inside.float()).all())
    assert torch.equal(images[~inside.expand_as(images)], frames[~inside.expand_as(frames)])
    assert float(ringing_loss(images, full, valid)) < 1e-5  # the pasted edges themselves do not ring
    small = frames[..., :64, :64]  # smaller than a square: the squares alone
    alone, d2, v2 = paste_edges(small, edges, dist, gen)
    assert alone.shape == edges.shape and torch.equal(d2, dist) and int(v2.sum()) == 2 * 80 * 80


def _paintings(data: type, count: int, size: int = 128) -> torch.Tensor:
    files = sorted(data("paintings", "monet", "trainA").glob("*.jpg"))[:count]
    rgb = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    small = [cv2.resize(x, (143, 143), interpolation=cv2.INTER_AREA)[:size, :size] for x in rgb]
    return torch.stack([torch.from_numpy(x).float().permute(2, 0, 1) / 127.5 - 1 for x in small])


def test_texture_loss_is_lowest_for_other_paintings_and_rises_for_blur_and_noise(data: type) -> None:
    """Paintings against other paintings score least; the same paintings blurred (the smooth
    output the loss is for) or sprinkled with pixel noise score more, and the loss has gradients."""
    from vst.warp import gaussian_blur

    p = _paintings(data, 16)
    ref, other = p[:8], p[8:]

    def score(x: torch.Tensor) -> float:
        return float(np.mean([float(texture_loss(x, ref, torch.Generator().manual_seed(s))) for s in range(3)]))

    base = score(other)
    assert score(gaussian_blur(other, 1.0)) > 1.5 * base
    assert score(other + 0.15 * torch.randn(other.shape, generator=torch.Generator().manual_seed(1))) > 1.3 * base
    x = gaussian_blur(other[:2], 1.0).requires_grad_(True)
    texture_loss(x, ref, torch.Generator().manual_seed(0)).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_trainer_runs_with_shift_and_flow_cycle_losses(tmp_path: Path, data: type) -> None:
    from vst.train.cli import main

    tiny_config(tmp_path, data)
    run = tmp_path / "run"
    args = ["--config", str(tmp_path / "tiny.toml"), "--run", str(run), "--no-progress", "-q",
            "--set", "loss.shift=10.0", "--set", "loss.flow_cycle=2.0", "--set", "loss.noise=10.0", "--set", "loss.noise_blur=1.5", "--set", "loss.ringing=5.0",
            "--set", "loss.texture=5.0", "--set", "loss.temporal_slack=1.0",
            "--set", "data.frame_size=[48, 32]"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for key in ("shift", "noise", "ringing", "texture", "flow_cycle", "temporal", "g_total"):
        assert all(math.isfinite(float(r[key])) for r in rows), key
    assert float(rows[0]["shift"]) > 0 and float(rows[0]["flow_cycle"]) > 0 and float(rows[0]["noise"]) > 0
    assert float(rows[0]["ringing"]) > 0 and float(rows[0]["texture"]) > 0


def test_edge_ringing_reads_levels_of_255_for_real_frames(data: type) -> None:
    """Through vst.train.evaluate, edges pasted into real frames: an identity scores ~0 levels, a wide sharpening conv several (its
    overshoot reaches 4 px from the edge; the first 2 px, where an outline may sit, are not counted)."""
    from vst.stream.eval_cli import load_frames
    from vst.train.evaluate import edge_ringing

    frames = load_frames(str(data("videos", "bikes.mp4")), (192, 108), 4)  # the edges are pasted into them
    sharpen = nn.Conv2d(3, 3, 9, padding=4, padding_mode="reflect", bias=False, groups=3)
    with torch.no_grad():
        k = -torch.ones(9, 9) / 81
        k[4, 4] += 2.0  # 2x the image minus its 9x9 mean
        sharpen.weight.copy_(k.expand(3, 1, 9, 9))
    assert edge_ringing(nn.Identity(), frames) < 0.01
    assert edge_ringing(sharpen, frames) > 2.0
