"""Loss functions and the discriminator image pool.

Images are float (N, 3, H, W) in [-1, 1]; flows (N, 2, H, W) in pixels; masks (N, 1, H, W) in {0, 1}.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vst.warp import backward_warp, gaussian_blur


def lsgan_loss(pred: Tensor, real: bool) -> Tensor:
    """Least-squares GAN loss: mean (D(x) - 1)^2 for real targets, mean D(x)^2 for fake ones."""
    target = 1.0 if real else 0.0
    return (pred.float() - target).square().mean()


def gan_loss(pred: Tensor, real: bool, mode: str, for_d: bool) -> Tensor:
    """The adversarial loss of one score map.

    'lsgan': least squares for both nets. 'hinge' (Lim & Ye 2017; SAGAN): D minimises
    relu(1 - D(real)) + relu(1 + D(fake)); G minimises -D(fake), so D stops pushing scores past
    the margin and leaves the generator a gradient.
    """
    if mode == "lsgan":
        return lsgan_loss(pred, real)
    if mode != "hinge":
        raise ValueError(f"gan mode must be 'lsgan' or 'hinge', got {mode!r}")
    p = pred.float()
    if not for_d:
        return -p.mean() if real else p.mean()
    return F.relu(1.0 - p).mean() if real else F.relu(1.0 + p).mean()


def temporal_loss(out_cur: Tensor, out_earlier: Tensor, flow: Tensor, mask: Tensor,
                  slack: float = 0.0, in_cur: Tensor | None = None, in_earlier: Tensor | None = None) -> Tensor:
    """Masked squared error between G(x_t) and G(x_{t-k}) warped onto frame t.

    flow: t -> t-k (where each pixel of frame t is found in frame t-k); mask: 1 where that pixel is
    visible in both frames. Averaged over the valid pixels and channels, so it does not shrink when
    much of the frame is occluded; 0 when nothing is valid.

    With ``slack`` > 0 each pixel's output change is charged only beyond ``slack`` times the input's
    own change there, |x_t - warp(x_{t-k})| (``in_cur``, ``in_earlier``): E(V) is judged against the
    input's own E(V), and warping resamples fine detail, so a sharp input's edges and texture
    "change" by their resampling error. The plain loss charges that to the output too, and the
    cheapest answer is to blur every fine detail away; the slack leaves the output as much room as
    the input has, and keeps the full charge where the input is smooth and still.
    """
    warped = backward_warp(out_earlier.float(), flow.float())
    m = mask.float()
    diff = out_cur.float() - warped
    if slack > 0:
        if in_cur is None or in_earlier is None:
            raise ValueError("temporal_loss with slack needs the input frames")
        allowed = slack * (in_cur.float() - backward_warp(in_earlier.float(), flow.float())).abs()
        diff = F.relu(diff.abs() - allowed)
    err = diff.square() * m
    return err.sum() / (m.sum() * out_cur.shape[1]).clamp_min(1.0)


def shift_loss(g: torch.nn.Module, x: Tensor, gx: Tensor, dy: int, dx: int, margin: int = 8) -> Tensor:
    """L1 between G on ``x`` cropped at offset (dy, dx) and the same crop of ``gx`` = G(x).

    The crop is 4 px smaller than ``x`` on each axis, so a size that is a multiple of 4 stays one;
    ``margin`` px at the crop's borders are left out, where the padding differs by construction.
    """
    h, w = x.shape[-2] - 4, x.shape[-1] - 4
    out = g(x[..., dy : dy + h, dx : dx + w]).float()
    ref = gx[..., dy : dy + h, dx : dx + w].float()
    m = margin
    return (out[..., m : h - m, m : w - m] - ref[..., m : h - m, m : w - m]).abs().mean()


def noise_loss(g: torch.nn.Module, x: Tensor, gx: Tensor, noise: Tensor) -> Tensor:
    """L1 between G on ``x + noise`` and ``gx`` = G(x): how much of the input's noise G paints into
    its output (camera and compression noise differ every frame, so that part flickers)."""
    return (g(x + noise).float() - gx.float()).abs().mean()


def sensor_noise(shape: tuple[int, ...], sigma: float, blur: float, gen: torch.Generator) -> Tensor:
    """Gaussian noise of standard deviation ``sigma``; with ``blur`` > 0 (px) it is first smoothed by
    a Gaussian of that σ and rescaled to ``sigma``, so it is correlated over a few pixels, like the
    noise of an upscaled or block-compressed video rather than independent per pixel."""
    noise = torch.randn(shape, generator=gen)
    if blur > 0:
        noise = gaussian_blur(noise, blur)
        noise = noise / noise.std().clamp_min(1e-8)
    return noise * sigma


EDGE_SIZE = 96
"""Side (px) of the synthetic edge images of ``ringing_loss``: wide enough for 20 px either side."""


def edge_colours(x: Tensor, gen: torch.Generator, samples: int = 8) -> Tensor:
    """Two colours per image of ``x`` (N, 3, H, W): the darkest and brightest of ``samples`` random
    pixels of it, so the synthetic edges have the palette and the contrast of the training frames.
    Returns (N, 2, 3)."""
    n, c, h, w = x.shape
    idx = torch.randint(0, h * w, (n, samples), generator=gen).to(x.device)
    px = x.detach().float().reshape(n, c, h * w).gather(2, idx[:, None].expand(n, c, samples))  # (N, 3, S)
    order = px.mean(1).argsort(1)
    dark = px.gather(2, order[:, None, :1].expand(n, c, 1))[..., 0]
    bright = px.gather(2, order[:, None, -1:].expand(n, c, 1))[..., 0]
    return torch.stack((dark, bright), 1)


def step_edges(colours: Tensor, gen: torch.Generator, size: int = EDGE_SIZE, max_sigma: float = 1.0) -> tuple[Tensor, Tensor]:
    """Straight edges between two flat colours at random angles and offsets, blurred by σ 0.3 to
    ``max_sigma`` px (soft edges, like those of upscaled video, ring too).

    colours: (N, 2, 3) in [-1, 1]. Returns the images (N, 3, size, size) and each pixel's signed
    distance (N, 1, size, size) in px (negative on the first colour's side) to the edge, or, for a
    blur σ above 1 px, to the edge's transition, 2(σ - 1) px wider on each side (so that the blurred
    step itself stays out of ``ringing_loss``'s near zone).
    """
    n = colours.shape[0]
    angle = torch.rand(n, generator=gen) * (2 * torch.pi)
    offset = (torch.rand(n, generator=gen) - 0.5) * (0.2 * size)
    sigma = 0.3 + (max_sigma - 0.3) * torch.rand(n, generator=gen)
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    ys, xs = torch.meshgrid(r, r, indexing="ij")
    dist = xs * angle.cos()[:, None, None] + ys * angle.sin()[:, None, None] - offset[:, None, None]
    w = 0.5 * (1 + torch.erf(dist / (sigma[:, None, None] * 2**0.5)))[:, None].to(colours.device)
    a, b = colours[:, 0, :, None, None], colours[:, 1, :, None, None]
    zone = (2 * (sigma - 1)).clamp_min(0)[:, None, None]
    beyond = dist.sign() * (dist.abs() - zone).clamp_min(0)
    return a * (1 - w) + b * w, beyond[:, None].to(colours.device)


def _inside_margin(like: Tensor, margin: int) -> Tensor:
    """A mask shaped like ``like``: 1 except ``margin`` px at the borders, where the padding acts."""
    mask = torch.zeros_like(like)
    mask[..., margin:-margin, margin:-margin] = 1.0
    return mask


def paste_edges(frames: Tensor, edges: Tensor, dist: Tensor, gen: torch.Generator, margin: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """The ``step_edges`` squares pasted into ``frames`` (N, 3, H, W) at random places, so that G sees
    them among real content (on a whole synthetic image it can learn to tell them apart, and behave
    on them only). Returns the images, the distance map (a large value outside the squares) and the
    mask of pixels ``ringing_loss`` counts: inside a square, ``margin`` px from its borders, where
    the pasted square's own borders and the padding act. Frames smaller than a square: the squares
    alone, with the same margin."""
    n, _, s, _ = edges.shape
    h, w = frames.shape[-2:]
    if h < s or w < s:
        return edges, dist, _inside_margin(dist, margin)
    images = frames.detach().clone()
    full = torch.full((n, 1, h, w), 1e4, device=frames.device)
    valid = torch.zeros((n, 1, h, w), device=frames.device)
    for i in range(n):
        y0 = int(torch.randint(0, h - s + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, w - s + 1, (1,), generator=gen))
        images[i, :, y0 : y0 + s, x0 : x0 + s] = edges[i].to(frames.dtype)
        full[i, :, y0 : y0 + s, x0 : x0 + s] = dist[i]
        valid[i, :, y0 + margin : y0 + s - margin, x0 + margin : x0 + s - margin] = 1.0
    return images, full, valid


def ringing_loss(out: Tensor, dist: Tensor, valid: Tensor | None = None, inner: int = 3, outer: int = 12, far: int = 20,
                 margin: int = 8) -> Tensor:  # fmt: skip
    """How far G's response to a clean edge swings away from its level on either side.

    ``out`` = G(``step_edges`` images), ``dist`` their signed distance to the edge. The output is
    averaged along the edge into a profile (1 px bins of distance), which averages texture away and
    keeps what is locked to the edge: outlines, halos and the parallel bands of contour ringing.
    The loss is the mean |profile - its far level on the same side| over ``inner`` to ``outer`` px from
    the edge, the far level being the mean at ``outer`` + 1 to ``far`` px. A colour map of the input
    scores 0; a sharpening filter or a net that rings does not. Only pixels where ``valid`` is 1 count
    (default: all but ``margin`` px at the image's borders, where the padding acts).
    """
    n, c = out.shape[:2]
    bins = dist.round().long().clamp(-far - 1, far + 1) + far + 1  # 0 and 2 far + 2 collect the rest
    if valid is None:
        valid = _inside_margin(dist, margin)
    nb = 2 * far + 3
    idx = bins.reshape(n, 1, -1)
    o = out.float().reshape(n, c, -1) * valid.reshape(n, 1, -1)
    sums = torch.zeros(n, c, nb, device=out.device).scatter_add(2, idx.expand(n, c, -1), o)
    counts = torch.zeros(n, 1, nb, device=out.device).scatter_add(2, idx, valid.reshape(n, 1, -1))
    profile = sums / counts.clamp_min(1.0)
    d = torch.arange(nb, device=out.device) - far - 1
    side_losses = []
    for sign in (-1, 1):
        far_bins = ((d * sign) > outer) & ((d * sign) <= far)
        near_bins = ((d * sign) >= inner) & ((d * sign) <= outer)
        wf = counts[..., far_bins]
        level = (profile[..., far_bins] * wf).sum(-1, keepdim=True) / wf.sum(-1, keepdim=True).clamp_min(1.0)
        wn = counts[..., near_bins]
        dev = ((profile[..., near_bins] - level).abs() * wn).sum(-1) / wn.sum(-1).clamp_min(1.0)
        side_losses.append(dev)
    return torch.stack(side_losses).mean()


def laplacian_bands(x: Tensor, levels: int) -> list[Tensor]:
    """The ``levels`` finest Laplacian bands of (N, C, H, W) images, finest first (5-tap binomial, reflect-padded)."""
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype) / 16.0
    c = x.shape[1]
    k = torch.outer(k1, k1).expand(c, 1, 5, 5)
    bands = []
    g = x
    for _ in range(levels):
        down = F.conv2d(F.pad(g, (2, 2, 2, 2), mode="reflect"), k, stride=2, groups=c)
        bands.append(g - F.interpolate(down, size=g.shape[-2:], mode="bilinear", align_corners=False))
        g = down
    return bands


def _random_patches(band: Tensor, count: int, size: int, gen: torch.Generator) -> Tensor:
    """``count`` random size x size neighbourhoods of a batch of bands: (count, C*size*size)."""
    cols = F.unfold(band, size)  # (N, C*size*size, L)
    n, d, L = cols.shape
    idx = torch.randint(0, n * L, (count,), generator=gen).to(band.device)
    return cols.permute(0, 2, 1).reshape(n * L, d)[idx]


def texture_loss(out: Tensor, paintings: Tensor, gen: torch.Generator, levels: int = 3, count: int = 1024,
                 directions: int = 64, size: int = 7) -> Tensor:  # fmt: skip
    """Sliced Wasserstein distance between the neighbourhoods of the finest Laplacian bands.

    A texture statistic (Heitz et al. 2021) on the pyramid of Karras et al.: at each of the
    ``levels`` finest bands, ``count`` random size x size patches of ``out`` and of ``paintings``,
    each band divided by the paintings' per-channel standard deviation there (so every level
    counts), are projected on ``directions`` random unit vectors; the loss is the mean L1 between
    the sorted projections. It asks for the paintings' fine texture (brush grain, stroke edges)
    where the adversarial losses leave the output smoother than a painting, and is blind to where
    in the frame it sits.
    """
    total = out.new_zeros(())
    for bo, bp in zip(laplacian_bands(out.float(), levels), laplacian_bands(paintings.float(), levels)):
        std = bp.std(dim=(0, 2, 3), keepdim=True).detach().clamp_min(1e-3)
        po = _random_patches(bo / std, count, size, gen)
        pp = _random_patches(bp / std, count, size, gen)
        d = torch.randn(po.shape[1], directions, generator=gen).to(out.device)
        d = d / d.norm(dim=0, keepdim=True)
        total = total + (torch.sort(po @ d, dim=0).values - torch.sort(pp @ d, dim=0).values).abs().mean()
    return total / levels


def image_gradients(x: Tensor) -> Tensor:
    """Sobel x/y responses per channel: (N, C, H, W) -> (N, 2C, H, W), replicate-padded."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype) / 8.0
    k = torch.stack((kx, kx.t())).unsqueeze(1)  # (2, 1, 3, 3)
    c = x.shape[1]
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(xp, k.repeat(c, 1, 1, 1), groups=c)


def edge_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """L1 between Sobel gradients: keeps the teacher's brush-stroke edges that plain L1 blurs away."""
    return (image_gradients(student.float()) - image_gradients(teacher.float())).abs().mean()


class ImagePool:
    """The seed's history of generated images (Shrivastava et al.): D sees a mix of old and new fakes.

    Until ``size`` images are stored each new image is stored and returned; afterwards, with
    probability 1/2, a stored image is returned in its place and the new one takes its slot.
    Random choices come from the caller's generator, so a resumed run draws the same ones.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[Tensor] = []

    def query(self, batch: Tensor, gen: torch.Generator) -> Tensor:
        if self.size <= 0:
            return batch
        out = []
        for img in batch.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand(1, generator=gen).item() < 0.5:
                i = int(torch.randint(len(self.images), (1,), generator=gen))
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.cat(out)

    def state(self) -> Tensor | None:
        """The stored images as one (K, 3, H, W) tensor (None when empty)."""
        return torch.cat(self.images) if self.images else None

    def load(self, images: Tensor | None, device: torch.device) -> None:
        self.images = [] if images is None else [img.unsqueeze(0).to(device) for img in images]
