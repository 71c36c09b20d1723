"""The labelled per-image grid on a hand-made case: columns, cells, titles, legend."""

from __future__ import annotations

import numpy as np
import pytest

from dcsm_lightning.outputs.canvas import figure_png, figure_rgb
from dcsm_lightning.outputs.grid import GridRow, grid_columns, grid_figure, legend_labels
from dcsm_lightning.palette import blend_heatmap, colorize_labels

NAMES = ["background", "cat", "dog", "bird"]
H, W = 6, 8


def _rows(truth: bool = True, refined: bool = True) -> list[GridRow]:
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    mask0 = np.zeros((H, W), np.int64)
    mask0[:3] = 2  # dog
    mask1 = np.zeros((H, W), np.int64)
    truth0 = np.zeros((H, W), np.int64)
    truth0[:, :4] = 1  # cat
    refined0 = mask0.copy()
    refined0[0, 0] = 255  # void
    heat = np.linspace(0, 1, H * W).reshape(H, W)
    return [
        GridRow(
            images[0], mask0, heat, "dog 0.90", truth0 if truth else None,
            refined0 if refined else None, "img_a",
        ),
        GridRow(
            images[1], mask1, None, "no candidate", truth0 * 0 if truth else None,
            mask1 if refined else None, "img_b",
        ),
    ]  # fmt: skip


def _cells(figure, rows: int, columns: int):
    """The grid's axes (the colour bar's axes come after them)."""
    return np.array(figure.axes[: rows * columns]).reshape(rows, columns)


def test_columns_follow_what_the_rows_hold():
    assert grid_columns(_rows()) == ["image", "truth", "map", "mask", "refined"]
    assert grid_columns(_rows(truth=False)) == ["image", "map", "mask", "refined"]
    assert grid_columns(_rows(refined=False)) == ["image", "truth", "map", "mask"]
    plain = [GridRow(r.image, r.mask) for r in _rows()]
    assert grid_columns(plain) == ["image", "mask"]


def test_the_legend_lists_exactly_the_labels_drawn():
    rows = _rows()
    assert legend_labels(rows) == [0, 1, 2, 255]  # bird (3) is drawn nowhere
    figure = grid_figure(rows, NAMES)
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["background", "cat", "dog", "void"]
    assert legend._ncols == 4  # one line, in id order
    # without ground truth, cat disappears; without the refined masks, void too
    assert legend_labels(_rows(truth=False, refined=False)) == [0, 2]


def test_cells_titles_and_row_names():
    rows = _rows()
    titles = {"mask": "dcsm", "refined": "dcsm+crf", "map": "dcsm map on image"}
    figure = grid_figure(rows, NAMES, titles)
    cells = _cells(figure, 2, 5)
    assert [ax.get_title() for ax in cells[0]] == [
        "image", "ground truth", "dcsm map on image", "dcsm", "dcsm+crf"
    ]  # fmt: skip
    assert all(ax.get_title() == "" for ax in cells[1])
    assert [cells[r, 0].get_ylabel() for r in range(2)] == ["img_a", "img_b"]

    def shown(ax):
        return np.asarray(ax.images[0].get_array())

    np.testing.assert_array_equal(shown(cells[0, 0]), rows[0].image)
    np.testing.assert_array_equal(shown(cells[0, 1]), colorize_labels(rows[0].truth))
    np.testing.assert_array_equal(shown(cells[0, 2]), blend_heatmap(rows[0].image, rows[0].heat))
    np.testing.assert_array_equal(shown(cells[0, 3]), colorize_labels(rows[0].mask))
    np.testing.assert_array_equal(shown(cells[0, 4]), colorize_labels(rows[0].refined))
    assert [t.get_text() for t in cells[0, 2].texts] == ["dog 0.90"]
    assert [t.get_text() for t in cells[1, 2].texts] == ["no candidate"]
    assert len(figure.axes) == 2 * 5 + 1  # + the map's colour bar
    assert "map value" in figure.axes[-1].get_xlabel()


def test_a_row_without_ground_truth_says_so():
    rows = _rows()
    rows[1] = GridRow(rows[1].image, rows[1].mask, name="img_b")
    cells = _cells(grid_figure(rows, NAMES), 2, 5)
    assert not cells[1, 1].images and [t.get_text() for t in cells[1, 1].texts] == [
        "no ground truth"
    ]
    assert [t.get_text() for t in cells[1, 4].texts] == ["not refined"]


def test_renders_to_pixels_of_the_figure_size():
    figure = grid_figure(_rows(), NAMES, dpi=50)
    width, height = figure.get_size_inches()
    pixels = figure_rgb(figure)
    assert pixels.shape == (int(height * 50), int(width * 50), 3)
    assert pixels.dtype == np.uint8 and pixels.std() > 10  # not a blank canvas
    assert figure_png(figure).startswith(b"\x89PNG")


def test_bad_rows_are_refused():
    row = _rows()[0]
    with pytest.raises(ValueError, match="mask must be"):
        GridRow(row.image, row.mask[:, :3])
    with pytest.raises(ValueError, match="heat must be"):
        GridRow(row.image, row.mask, heat=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="image must be uint8"):
        GridRow(row.image.astype(np.float32), row.mask)
    with pytest.raises(ValueError, match="at least one row"):
        grid_figure([], NAMES)
    with pytest.raises(ValueError, match="unknown grid columns"):
        grid_figure([row], NAMES, {"heatmap": "x"})


def test_a_long_legend_reads_line_by_line_in_id_order():
    image = np.zeros((2, 7, 3), np.uint8)
    mask = np.arange(7).reshape(1, 7).repeat(2, axis=0)  # labels 0..6 in 2 columns of 2 in
    names = [f"n{k}" for k in range(7)]
    (legend,) = grid_figure([GridRow(image, mask)], names).legends
    assert legend._ncols == 2  # 4 lines of 2; matplotlib fills column by column
    assert [t.get_text() for t in legend.get_texts()] == ["n0", "n2", "n4", "n6", "n1", "n3", "n5"]
