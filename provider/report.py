"""Confusion-matrix image, drawn with OpenCV (no plotting library needed at run time)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CELL = 28  # pixels per matrix cell
FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT_X = 6  # left edge (and least right margin) of the title and footer lines
TITLE_SCALE = 0.55
FOOTER_SCALE = 0.4
FOOTER = "rows: true label, columns: predicted"


def confusion_png(matrix: np.ndarray, labels: Sequence[str], title: str = "") -> bytes:
    """Render an (L, L) count matrix (rows true, columns predicted) as PNG bytes."""
    matrix = np.asarray(matrix)
    n = len(labels)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix shape {matrix.shape} does not match {n} labels")
    names = [str(lb)[:18] for lb in labels]
    margin = 12 + max((cv2.getTextSize(s, FONT, 0.45, 1)[0][0] for s in names), default=40)
    (title_w, title_h), title_base = cv2.getTextSize(title, FONT, TITLE_SCALE, 1)
    (foot_w, foot_h), foot_base = cv2.getTextSize(FOOTER, FONT, FOOTER_SCALE, 1)
    title_y = 8 + title_h  # baseline
    top = margin + (max(30, title_y + title_base + 4) if title else 8)
    size = n * CELL
    height = top + size + max(40, foot_h + foot_base + 26)
    width = max(margin + size + 20, TEXT_X + title_w + TEXT_X, TEXT_X + foot_w + TEXT_X)
    img = np.full((height, width, 3), 255, np.uint8)
    rows = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    frac = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    for i in range(n):
        for j in range(n):
            shade = int(255 - 200 * frac[i, j])
            colour = (255, shade, shade) if i != j else (shade, 255, shade)
            x0, y0 = margin + j * CELL, top + i * CELL
            cv2.rectangle(img, (x0, y0), (x0 + CELL, y0 + CELL), colour, -1)
            cv2.rectangle(img, (x0, y0), (x0 + CELL, y0 + CELL), (200, 200, 200), 1)
            if matrix[i, j]:
                text = str(int(matrix[i, j]))
                (tw, th), _ = cv2.getTextSize(text, FONT, 0.35, 1)
                org = (x0 + (CELL - tw) // 2, y0 + (CELL + th) // 2)
                cv2.putText(img, text, org, FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for k, name in enumerate(names):
        y = top + k * CELL + CELL // 2 + 4
        cv2.putText(img, name, (6, y), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        canvas = np.full((CELL, margin, 3), 255, np.uint8)  # column label, drawn then rotated
        cv2.putText(canvas, name, (4, CELL // 2 + 4), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        img[top - margin : top, margin + k * CELL : margin + (k + 1) * CELL] = np.rot90(canvas, 1)
    if title:
        cv2.putText(img, title, (TEXT_X, title_y), FONT, TITLE_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    foot_y = height - 8 - foot_base
    grey = (80, 80, 80)
    cv2.putText(img, FOOTER, (TEXT_X, foot_y), FONT, FOOTER_SCALE, grey, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
