import numpy as np
import pytest

from rcnnzoo.data.transforms import (
    HFlipTransform,
    NoOpTransform,
    RandomFlip,
    ResizeShortestEdge,
    ResizeTransform,
    VFlipTransform,
    apply_augmentations,
)


def _image(h, w):
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def test_hflip_image_box_and_polygon():
    img = _image(20, 100)
    out, tfms = apply_augmentations([RandomFlip(prob=1.0)], img)
    assert isinstance(tfms.transforms[0], HFlipTransform)
    np.testing.assert_array_equal(out, img[:, ::-1])
    # x -> W - x, and the corners swap: [10, 20, 30, 40] -> [100 - 30, 20, 100 - 10, 40]
    np.testing.assert_allclose(tfms.apply_box(np.array([[10.0, 20, 30, 40]])), [[70, 20, 90, 40]])
    (poly,) = tfms.apply_polygons([np.array([[10.0, 1], [30, 1], [30, 5]])])
    np.testing.assert_allclose(poly, [[90, 1], [70, 1], [70, 5]])


def test_vflip_and_noop():
    img = _image(50, 10)
    out, tfms = apply_augmentations([RandomFlip(prob=1.0, horizontal=False, vertical=True)], img)
    assert isinstance(tfms.transforms[0], VFlipTransform)
    np.testing.assert_array_equal(out, img[::-1])
    np.testing.assert_allclose(tfms.apply_box(np.array([[1.0, 10, 5, 20]])), [[1, 30, 5, 40]])
    out, tfms = apply_augmentations([RandomFlip(prob=0.0)], img)
    assert isinstance(tfms.transforms[0], NoOpTransform) and out is img


def test_random_flip_probability_and_seed():
    img = _image(4, 4)
    np.random.seed(0)
    flips = [isinstance(RandomFlip(prob=0.5).get_transform(img), HFlipTransform) for _ in range(400)]
    assert 150 < sum(flips) < 250
    np.random.seed(0)
    again = [isinstance(RandomFlip(prob=0.5).get_transform(img), HFlipTransform) for _ in range(400)]
    assert flips == again  # reproducible from np.random's seed


def test_resize_shortest_edge_with_max_size():
    img = _image(50, 100)  # h=50, w=100
    out, tfms = apply_augmentations([ResizeShortestEdge(200)], img)
    assert out.shape == (200, 400, 3)  # short edge 50 -> 200: scale 4
    out, tfms = apply_augmentations([ResizeShortestEdge(200, max_size=300)], img)
    assert out.shape == (150, 300, 3)  # long edge capped: scale 3
    np.testing.assert_allclose(tfms.apply_box(np.array([[10.0, 5, 20, 15]])), [[30, 15, 60, 45]])
    assert tfms.transforms[0].inverse().apply_coords(np.array([[30.0, 15]])).tolist() == [[10, 5]]


def test_resize_keeps_dtype_and_single_channel():
    t = ResizeTransform(10, 20, 5, 10)
    assert t.apply_image(np.zeros((10, 20, 1), np.uint8)).shape == (5, 10, 1)
    mask = np.zeros((10, 20), np.uint8)
    mask[:, 10:] = 1
    out = t.apply_segmentation(mask)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}  # nearest: labels stay labels
    with pytest.raises(ValueError, match="expects an image"):
        t.apply_image(np.zeros((11, 20), np.uint8))


def test_resize_sampling_styles():
    img = _image(100, 100)
    np.random.seed(0)
    choice = {apply_augmentations([ResizeShortestEdge((32, 64, 96))], img)[0].shape[0] for _ in range(60)}
    assert choice == {32, 64, 96}
    lengths = {
        apply_augmentations([ResizeShortestEdge((40, 60), sample_style="range")], img)[0].shape[0]
        for _ in range(200)
    }
    assert min(lengths) >= 40 and max(lengths) <= 60 and len(lengths) > 10
    # already the right size: nothing to do
    assert isinstance(ResizeShortestEdge(100).get_transform(img), NoOpTransform)


def test_resize_then_flip_composes():
    img = _image(10, 20)
    out, tfms = apply_augmentations([ResizeShortestEdge(20), RandomFlip(prob=1.0)], img)
    assert out.shape == (20, 40, 3)
    # x: 2 -> 4 (scale 2) -> 40 - 4 = 36; the flip sees the resized width
    np.testing.assert_allclose(tfms.apply_box(np.array([[2.0, 1, 6, 3]])), [[28, 2, 36, 6]])


@pytest.mark.parametrize(
    "make",
    [
        lambda: ResizeShortestEdge((10, 20, 30), sample_style="range"),
        lambda: ResizeShortestEdge(10, sample_style="uniform"),
        lambda: ResizeShortestEdge(0),
        lambda: RandomFlip(horizontal=True, vertical=True),
        lambda: RandomFlip(prob=1.5),
    ],
)
def test_invalid_arguments(make):
    with pytest.raises(ValueError):
        make()
