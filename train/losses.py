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


def temporal_loss(out_cur: Tensor, out_earlier: Tensor, flow: Tensor, mask: Tensor) -> Tensor:
    """Masked squared error between G(x_t) and G(x_{t-k}) warped onto frame t.

    flow: t -> t-k (where each pixel of frame t is found in frame t-k); mask: 1 where that pixel is
    visible in both frames. Averaged over the valid pixels and channels, so it does not shrink when
    much of the frame is occluded; 0 when nothing is valid.
    """
    warped = backward_warp(out_earlier.float(), flow.float())
    m = mask.float()
    err = (out_cur.float() - warped).square() * m
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
