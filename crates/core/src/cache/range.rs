//! Redis `LRANGE` index semantics, for the in-memory lists.

use std::ops::Range;

/// The slice of a list of `len` items that `LRANGE key from to` returns:
/// both ends inclusive, negative indices count from the end, out-of-range ends
/// are clamped, and an empty range is empty rather than an error.
pub fn lrange(len: usize, from: i64, to: i64) -> Range<usize> {
    let len = len as i64;
    let start = if from < 0 { (len + from).max(0) } else { from };
    let end = if to < 0 { len + to } else { to.min(len - 1) };
    if start > end || start >= len {
        return 0..0;
    }
    start as usize..(end + 1) as usize
}

#[cfg(test)]
mod tests {
    use super::lrange;

    #[test]
    fn matches_lrange() {
        // list of 5: a b c d e
        assert_eq!(lrange(5, 0, -1), 0..5);
        assert_eq!(lrange(5, 1, 2), 1..3);
        assert_eq!(lrange(5, -2, -1), 3..5);
        assert_eq!(lrange(5, -100, 1), 0..2);
        assert_eq!(lrange(5, 3, 100), 3..5);
        assert_eq!(lrange(5, 4, 2), 0..0);
        assert_eq!(lrange(5, 5, -1), 0..0);
        assert_eq!(lrange(5, 0, -6), 0..0);
        assert_eq!(lrange(0, 0, -1), 0..0);
    }
}
