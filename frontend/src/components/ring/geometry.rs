//! The ring's geometry, apart from Leptos: where a hash sits on the circle,
//! arcs and dots as SVG path data, the zoomed and panned view box, the
//! pointer's angle and the nearest drawn key.

use std::f64::consts::TAU;
use std::fmt::Write;

use shardscope_shared::hash::ring_fraction;
use shardscope_shared::placement::ring::OwnedArc;

/// The ring's radius, in view-box units.
pub const R: f64 = 100.0;
/// Half the side of the whole ring's view box (room for the node labels).
pub const HALF: f64 = 155.0;
/// The closest zoom: a 10,000-key ring's keys stand apart.
pub const ZOOM_MAX: f64 = 1024.0;
/// 2^64, one turn in hashes.
const TURN: f64 = 18_446_744_073_709_551_616.0;

/// (x, y) of a ring fraction, clockwise from the top.
pub fn at(fraction: f64, radius: f64) -> (f64, f64) {
    let a = fraction * TAU - TAU / 4.0;
    (radius * a.cos(), radius * a.sin())
}

/// The ring fraction at a point of the view box (its angle, clockwise from the top).
pub fn fraction_at(x: f64, y: f64) -> f64 {
    ((y.atan2(x) + TAU / 4.0) / TAU).rem_euclid(1.0)
}

/// The hash at a ring fraction.
pub fn hash_at(fraction: f64) -> u64 {
    // `as` saturates: 1.0 and above give u64::MAX, NaN gives 0.
    (fraction * TURN) as u64
}

/// Decimal places that keep coordinates finer than a quarter of a pixel
/// at zoom `z` (the whole view box is a few hundred pixels wide).
pub fn decimals(z: f64) -> usize {
    (1 + z.max(1.0).log10().ceil() as usize).min(8)
}

/// Appends `v` with `dp` decimals (at most 8), as `format!("{v:.dp$}")`
/// would but without its float printing: a ring redraw writes ~20,000.
pub fn push_fixed(out: &mut String, v: f64, dp: usize) {
    let scale = 10f64.powi(dp as i32);
    let n = (v * scale).round();
    if dp > 8 || !n.is_finite() || n.abs() >= 1e15 {
        let _ = write!(out, "{v:.dp$}");
        return;
    }
    let (negative, n) = (n < 0.0, n.abs() as u64);
    let mut digits = [0u8; 24];
    let mut i = digits.len();
    let mut rest = n;
    // The fraction's digits, then the point, then the integer's.
    for _ in 0..dp {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    if dp > 0 {
        i -= 1;
        digits[i] = b'.';
    }
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if negative && n != 0 {
        out.push('-');
    }
    // Only ASCII digits and '.' were written.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Appends an owner's arc at `radius` to path data `d`.
pub fn push_arc(d: &mut String, arc: &OwnedArc, radius: f64, dp: usize) {
    let from = ring_fraction(arc.from);
    let span = arc.span as f64 / TURN;
    let halves: &[f64] = if span >= 1.0 { &[0.5, 0.5] } else { &[span] };
    let (x, y) = at(from, radius);
    d.push('M');
    push_point(d, x, y, dp);
    let mut f = from;
    for &s in halves {
        f += s;
        let (x, y) = at(f, radius);
        d.push('A');
        push_point(d, radius, radius, dp);
        d.push_str(if s > 0.5 { " 0 1 1 " } else { " 0 0 1 " });
        push_point(d, x, y, dp);
    }
}

fn push_point(d: &mut String, x: f64, y: f64, dp: usize) {
    push_fixed(d, x, dp);
    d.push(',');
    push_fixed(d, y, dp);
}

/// The ring fraction at the middle of an arc.
pub fn middle(arc: &OwnedArc) -> f64 {
    (ring_fraction(arc.from) + arc.span as f64 / 2.0 / TURN).rem_euclid(1.0)
}

/// Path data of one dot at a ring fraction: a zero-length segment that a
/// round line cap draws as a dot, so many dots share one `<path>`.
pub fn push_dot(d: &mut String, fraction: f64, radius: f64, dp: usize) {
    let (x, y) = at(fraction, radius);
    d.push('M');
    push_point(d, x, y, dp);
    d.push_str("h0");
}

/// What part of the ring is in view: zoom (1 = the whole ring) and the
/// centre of the view, in view-box units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    pub z: f64,
    pub cx: f64,
    pub cy: f64,
}

impl View {
    /// The whole ring.
    pub const WHOLE: View = View { z: 1.0, cx: 0.0, cy: 0.0 };

    /// Half the side of the view box.
    pub fn half(&self) -> f64 {
        HALF / self.z
    }

    /// The SVG `viewBox`.
    pub fn view_box(&self) -> String {
        let (h, dp) = (self.half(), decimals(self.z) + 2);
        format!("{:.dp$} {:.dp$} {:.dp$} {:.dp$}", self.cx - h, self.cy - h, 2.0 * h, 2.0 * h)
    }

    /// Whether a point is inside the view box.
    pub fn contains(&self, (x, y): (f64, f64)) -> bool {
        let h = self.half();
        (x - self.cx).abs() <= h && (y - self.cy).abs() <= h
    }

    /// Zoomed by `factor` about a point, which stays where it is on the
    /// screen; clamped to 1..=[`ZOOM_MAX`], and back to the whole ring at 1.
    pub fn zoomed(self, factor: f64, (px, py): (f64, f64)) -> View {
        let z = (self.z * factor).clamp(1.0, ZOOM_MAX);
        if !z.is_finite() || z <= 1.0 {
            return View::WHOLE;
        }
        let k = self.z / z;
        View { z, cx: px + (self.cx - px) * k, cy: py + (self.cy - py) * k }.clamped()
    }

    /// Zoomed by `factor` (the buttons and keys): zooming in centres the
    /// view on the point of the ring nearest its centre (the top, from the
    /// whole ring), so it goes along the ring, not into its empty middle;
    /// zooming out keeps the centre.
    pub fn stepped(self, factor: f64) -> View {
        let zoomed = self.zoomed(factor, (self.cx, self.cy));
        if factor <= 1.0 || zoomed == View::WHOLE {
            return zoomed;
        }
        let d = self.cx.hypot(self.cy);
        let (cx, cy) = if d < 1e-9 { (0.0, -R) } else { (self.cx * R / d, self.cy * R / d) };
        View { cx, cy, ..zoomed }
    }

    /// Moved by (`dx`, `dy`) view-box units, kept around the ring.
    pub fn panned(self, dx: f64, dy: f64) -> View {
        if self.z <= 1.0 || !(dx.is_finite() && dy.is_finite()) {
            return self;
        }
        View { cx: self.cx + dx, cy: self.cy + dy, ..self }.clamped()
    }

    fn clamped(self) -> View {
        View { cx: self.cx.clamp(-HALF, HALF), cy: self.cy.clamp(-HALF, HALF), ..self }
    }

    /// View-box units per screen pixel, for an element of `width` x `height`
    /// pixels showing the view box whole (`preserveAspectRatio` "meet").
    pub fn units_per_px(&self, width: f64, height: f64) -> f64 {
        let side = width.min(height);
        if side > 0.0 {
            2.0 * self.half() / side
        } else {
            0.0
        }
    }

    /// The view-box point under a pixel (`px`, `py`) of such an element.
    pub fn point_at(&self, px: f64, py: f64, width: f64, height: f64) -> (f64, f64) {
        let u = self.units_per_px(width, height);
        (self.cx + (px - width / 2.0) * u, self.cy + (py - height / 2.0) * u)
    }
}

/// The index of the hash in `sorted` nearest `hash` around the circle.
pub fn nearest(sorted: &[u64], hash: u64) -> Option<usize> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let after = sorted.partition_point(|&h| h < hash) % n;
    let before = (after + n - 1) % n;
    let gap = |i: usize| {
        let d = sorted[i].wrapping_sub(hash);
        d.min(d.wrapping_neg())
    };
    Some(if gap(before) < gap(after) { before } else { after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_of_the_ring_gives_back_its_fraction() {
        for f in [0.0, 0.1, 0.25, 0.5, 0.75, 0.999] {
            let (x, y) = at(f, R);
            assert!((fraction_at(x, y) - f).abs() < 1e-12, "{f}");
        }
        assert_eq!(hash_at(0.5), 1 << 63);
        assert_eq!(hash_at(f64::NAN), 0);
        assert_eq!(hash_at(2.0), u64::MAX);
    }

    #[test]
    fn nearest_wraps_around_the_top() {
        let sorted = [10, 1000, u64::MAX - 5];
        assert_eq!(nearest(&sorted, 0), Some(2));
        assert_eq!(nearest(&sorted, 11), Some(0));
        assert_eq!(nearest(&sorted, 600), Some(1));
        assert_eq!(nearest(&sorted, u64::MAX), Some(2));
        assert_eq!(nearest(&sorted, 400), Some(0));
        assert_eq!(nearest(&[], 3), None);
        assert_eq!(nearest(&[7], u64::MAX / 2), Some(0));
    }

    #[test]
    fn zoom_keeps_its_point_and_its_bounds() {
        let v = View::WHOLE.zoomed(4.0, (0.0, -R));
        assert_eq!(v.z, 4.0);
        // The point zoomed about stays at the same place in the view box.
        let before = (0.0 - View::WHOLE.cx) / View::WHOLE.half();
        let after = (0.0 - v.cx) / v.half();
        assert!((before - after).abs() < 1e-12);
        assert_eq!(v.zoomed(1e9, (0.0, 0.0)).z, ZOOM_MAX);
        assert_eq!(v.zoomed(0.0, (0.0, 0.0)), View::WHOLE);
        assert_eq!(v.zoomed(f64::NAN, (0.0, 0.0)), View::WHOLE);
        assert_eq!(View::WHOLE.panned(10.0, 0.0), View::WHOLE);
        let far = v.panned(1e9, -1e9);
        assert_eq!((far.cx, far.cy), (HALF, -HALF));
        // Stepping in goes along the ring: its top stays in view.
        let mut s = View::WHOLE;
        for _ in 0..10 {
            s = s.stepped(2.0);
            assert!(s.contains((0.0, -R)), "{s:?}");
        }
        assert_eq!(s.z, ZOOM_MAX);
        let p = v.point_at(300.0, 200.0, 600.0, 400.0);
        assert!((p.0 - v.cx).abs() < 1e-12 && (p.1 - v.cy).abs() < 1e-12);
        assert_eq!(v.units_per_px(0.0, 10.0), 0.0);
    }

    #[test]
    fn a_whole_circle_is_drawn_as_two_halves() {
        let mut d = String::new();
        push_arc(&mut d, &OwnedArc { from: 0, to: 0, owner: 0, span: 1 << 64 }, R, 2);
        assert_eq!(d.matches('A').count(), 2);
        let mut d = String::new();
        push_dot(&mut d, 0.0, R, 2);
        assert_eq!(d, "M0.00,-100.00h0");
    }

    #[test]
    fn fixed_point_is_what_format_writes() {
        for v in [0.0, -0.0, 0.004, -0.004, -0.006, 1.5, -99.99999, 123.456789, 100.0, -3.25e-7, 1e20, f64::NAN] {
            for dp in [0, 1, 2, 5, 8, 9] {
                let mut got = String::new();
                push_fixed(&mut got, v, dp);
                let want = format!("{v:.dp$}");
                // format! keeps the sign of a negative value that rounds to zero.
                assert_eq!(got.trim_start_matches('-'), want.trim_start_matches('-'), "{v} at {dp}");
            }
        }
    }
}
