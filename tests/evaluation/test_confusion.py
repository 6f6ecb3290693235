"""The confusion matrix on hand-made images whose every cell is known."""

import numpy as np
import pytest

from csrseg.evaluation.confusion import confusion_matrix
from csrseg.masks.rle import encode_mask

SIZE = 40
BG = 3  # the background row / column of a 3-class matrix


def _mask(y0, x0, y1, x1):
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _dataset(anns):
    """anns: (image_id, category_id, mask[, iscrowd])."""
    images = sorted({a[0] for a in anns} | {1, 2})
    return dict(images=[dict(id=i, height=SIZE, width=SIZE, file_name=f"{i}.png") for i in images],
                categories=[dict(id=c, name=n) for c, n in ((1, "a"), (2, "b"), (5, "c"))],
                annotations=[dict(id=n, image_id=a[0], category_id=a[1], segmentation=encode_mask(a[2]),
                                  iscrowd=a[3] if len(a) > 3 else 0) for n, a in enumerate(anns, 1)])


def _pred(image_id, category_id, mask, score):
    return dict(image_id=image_id, category_id=category_id, segmentation=encode_mask(mask), score=score)


def test_every_kind_of_match_lands_in_its_cell():
    a, b, c = _mask(0, 0, 10, 10), _mask(20, 20, 30, 30), _mask(0, 25, 10, 35)
    dataset = _dataset([(1, 1, a), (1, 2, b), (2, 5, c), (2, 1, _mask(25, 0, 35, 10), 1)])  # the last: a crowd
    results = [
        _pred(1, 1, a, 0.9),                       # right class: [a, a]
        _pred(1, 1, b, 0.8),                       # b's object called a: [b, a]
        _pred(1, 5, _mask(30, 0, 40, 10), 0.7),    # nothing there: [background, c]
        _pred(1, 1, a, 0.6),                       # a duplicate of the first, its object taken: [background, a]
        _pred(1, 2, _mask(30, 30, 40, 40), 0.1),   # below the score threshold: not counted
        _pred(2, 2, _mask(26, 1, 34, 9), 0.5),     # inside the crowd region: not counted
    ]                                              # c in image 2 is never found: [c, background]
    matrix = confusion_matrix(dataset, results, [1, 2, 5], iou_thr=0.5, score_thr=0.3)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 0] = expected[1, 0] = expected[BG, 2] = expected[BG, 0] = expected[2, BG] = 1
    np.testing.assert_array_equal(matrix, expected)


def test_matching_is_greedy_by_score_not_by_iou():
    """The higher-scoring prediction takes the object even though the other overlaps it more."""
    truth = _mask(0, 0, 10, 10)
    dataset = _dataset([(1, 1, truth)])
    loose = _mask(0, 0, 10, 14)  # IoU 100 / 140 = 0.71
    results = [_pred(1, 1, truth, 0.4), _pred(1, 2, loose, 0.9)]
    matrix = confusion_matrix(dataset, results, [1, 2, 5], iou_thr=0.5, score_thr=0.3)
    assert matrix[0, 1] == 1  # the object, class a, matched by the b prediction scoring 0.9
    assert matrix[BG, 0] == 1  # the exact prediction came second and found nothing left
    assert matrix.sum() == 2


@pytest.mark.parametrize("iou_thr, matched", [(0.5, True), (0.8, False)])
def test_a_match_needs_the_iou_threshold(iou_thr, matched):
    dataset = _dataset([(1, 1, _mask(0, 0, 10, 10))])
    results = [_pred(1, 1, _mask(0, 0, 10, 14), 0.9)]  # IoU 0.71
    matrix = confusion_matrix(dataset, results, [1, 2, 5], iou_thr=iou_thr, score_thr=0.3)
    if matched:
        assert matrix[0, 0] == 1 and matrix.sum() == 1
    else:
        assert matrix[BG, 0] == 1 and matrix[0, BG] == 1 and matrix.sum() == 2


def test_rows_add_up_to_the_objects_and_columns_to_the_predictions():
    rng = np.random.default_rng(0)
    anns, results = [], []
    for image in (1, 2):
        for _ in range(4):
            y, x = rng.integers(0, 30, size=2)
            mask = _mask(y, x, y + 10, x + 10)
            anns.append((image, int(rng.choice([1, 2, 5])), mask))
            results.append(_pred(image, int(rng.choice([1, 2, 5])), np.roll(mask, int(rng.integers(-3, 4)), axis=1),
                                 float(rng.random())))
    matrix = confusion_matrix(_dataset(anns), results, [1, 2, 5], score_thr=0.0)
    assert matrix[:BG].sum() == len(anns)  # every object once: matched or missed
    assert matrix[:, :BG].sum() == len(results)  # every prediction once: matched or background
    assert matrix[BG, BG] == 0
