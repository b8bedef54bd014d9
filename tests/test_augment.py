"""DiffAugment transforms: shapes, what they do to pixels, and that gradients flow through them."""

from __future__ import annotations

import torch

from ganctl.augment import augment, color, cutout, translation


def test_translation_shifts_whole_images_and_fills_with_background() -> None:
    torch.manual_seed(0)
    images = torch.full((64, 1, 8, 8), -1.0)
    images[:, :, 3:5, 3:5] = 1.0  # a 2x2 blob in the middle
    shifted = translation(images)
    assert shifted.shape == images.shape
    assert ((shifted == 1.0).flatten(1).sum(1) == 4).all()  # the blob moves, intact (shift <= 1 px here)
    assert set(shifted.unique().tolist()) == {-1.0, 1.0}
    assert not torch.equal(shifted, images)


def test_cutout_blanks_one_square_per_image() -> None:
    torch.manual_seed(0)
    images = torch.ones(32, 3, 8, 8)
    out = cutout(images)
    blanked = (out == -1.0).all(1).flatten(1).sum(1)  # pixels blanked in every channel, per image
    assert ((blanked >= 1) & (blanked <= 16)).all()   # at most a 4x4 square, clipped at the border
    assert ((out == 1.0) | (out == -1.0)).all()


def test_gradients_flow_to_the_generator() -> None:
    fake = torch.randn(4, 1, 16, 16, requires_grad=True)
    augment(fake, ["translation", "cutout"]).sum().backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_empty_policy_is_identity() -> None:
    images = torch.randn(2, 1, 8, 8)
    assert augment(images, []) is images


def test_color_changes_brightness_saturation_and_contrast_per_image() -> None:
    torch.manual_seed(0)
    flat = torch.rand(64, 3, 1, 1).expand(64, 3, 4, 4) * 2 - 1  # one colour per image
    out = color(flat)
    assert out.shape == flat.shape
    # Every step is per image: a flat image stays flat, its grey level moved by the brightness
    # offset (up to 0.5), its colour spread scaled by saturation [0, 2) and contrast [0.5, 1.5).
    torch.testing.assert_close(out, out[:, :, :1, :1].expand_as(out))
    shift = out.mean(1) - flat.mean(1)
    assert (shift.abs() <= 0.5).all() and shift.abs().max() > 0.3
    spread = (out - out.mean(1, keepdim=True)).norm(dim=1) / (flat - flat.mean(1, keepdim=True)).norm(dim=1)
    assert (spread < 3).all() and spread.min() < 0.5 and spread.max() > 1.5
    grey = torch.rand(2, 1, 8, 8, requires_grad=True)
    augment(grey, ["color"]).sum().backward()
    assert grey.grad is not None and grey.grad.abs().sum() > 0
