//! The release's preparation of the subject mask (`gen_dilate`, then
//! `gen_erosion`, in `utils/inference_utils.py`): OpenCV's elliptical
//! structuring element of size `k`, dilation of `mask != 0` and erosion of
//! `mask == 255`, each giving 0 or 255. Pixels outside the image take no
//! part in a max or min (OpenCV's default border for both).

/// `cv2.getStructuringElement(MORPH_ELLIPSE, (k, k))`: per row, the
/// half-open column span `[j1, j2)` that is set.
fn ellipse_rows(k: usize) -> Vec<(usize, usize)> {
    let (r, c) = ((k / 2) as i64, (k / 2) as i64);
    let inv_r2 = if r > 0 { 1.0 / (r * r) as f64 } else { 0.0 };
    (0..k as i64)
        .map(|i| {
            let dy = i - r;
            if dy.abs() <= r {
                // saturate_cast<int> rounds half to even.
                let dx = ((c as f64) * (((r * r - dy * dy) as f64) * inv_r2).sqrt())
                    .round_ties_even() as i64;
                (
                    (c - dx).max(0) as usize,
                    ((c + dx + 1).min(k as i64)) as usize,
                )
            } else {
                (0, 0)
            }
        })
        .collect()
}

/// Max (`dilate`) or min of `src` over the kernel, anchored at its centre.
fn morph(src: &[bool], (w, h): (usize, usize), k: usize, dilate: bool) -> Vec<bool> {
    let rows = ellipse_rows(k);
    let anchor = (k / 2) as i64;
    let mut out = vec![false; w * h];
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let mut acc = !dilate;
            'kernel: for (i, &(j1, j2)) in rows.iter().enumerate() {
                let sy = y + i as i64 - anchor;
                if sy < 0 || sy >= h as i64 {
                    continue;
                }
                for j in j1..j2 {
                    let sx = x + j as i64 - anchor;
                    if sx < 0 || sx >= w as i64 {
                        continue;
                    }
                    let v = src[(sy as usize) * w + sx as usize];
                    if dilate && v {
                        acc = true;
                        break 'kernel;
                    }
                    if !dilate && !v {
                        acc = false;
                        break 'kernel;
                    }
                }
            }
            out[(y as usize) * w + x as usize] = acc;
        }
    }
    out
}

/// The mask the model is given (0-255 as f32), from a gray mask: dilated
/// by `dilate` then eroded by `erode` where they are non-zero.
pub fn prepare(gray: &[u8], size: (usize, usize), erode: usize, dilate: usize) -> Vec<f32> {
    let mut values: Vec<f32> = gray.iter().map(|&v| f32::from(v)).collect();
    if dilate > 0 {
        let on: Vec<bool> = values.iter().map(|&v| v != 0.0).collect();
        values = morph(&on, size, dilate, true)
            .into_iter()
            .map(|b| if b { 255.0 } else { 0.0 })
            .collect();
    }
    if erode > 0 {
        let on: Vec<bool> = values.iter().map(|&v| v == 255.0).collect();
        values = morph(&on, size, erode, false)
            .into_iter()
            .map(|b| if b { 255.0 } else { 0.0 })
            .collect();
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ellipse_matches_opencv() {
        // cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)).
        let spans = ellipse_rows(5);
        assert_eq!(spans, vec![(2, 3), (0, 5), (0, 5), (0, 5), (2, 3)]);
        // (3, 3) is a cross.
        assert_eq!(ellipse_rows(3), vec![(1, 2), (0, 3), (1, 2)]);
    }
}
