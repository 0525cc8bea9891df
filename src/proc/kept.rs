//! What a process wrote to a pipe, kept within a bound: its first bytes and its last ones, and
//! how many were written in all. A server's stderr and npm's output are read this way, so a
//! process that writes without end costs tend a fixed amount of memory.

use std::collections::VecDeque;
use std::io::Read;

/// The first `head_max` bytes written, the last `tail_max` after them, and the total.
#[derive(Debug)]
pub struct Kept {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_max: usize,
    tail_max: usize,
    total: u64,
}

impl Kept {
    /// Keeps the first `head_max` bytes and the last `tail_max`.
    pub fn new(head_max: usize, tail_max: usize) -> Self {
        Self { head: Vec::new(), tail: VecDeque::new(), head_max, tail_max, total: 0 }
    }

    /// Adds bytes as they were written.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let to_head = self.head_max.saturating_sub(self.head.len()).min(bytes.len());
        self.head.extend_from_slice(&bytes[..to_head]);
        bytes = &bytes[to_head..];
        // Only the last `tail_max` of this chunk can stay; then the oldest make room.
        let bytes = &bytes[bytes.len().saturating_sub(self.tail_max)..];
        let excess = (self.tail.len() + bytes.len()).saturating_sub(self.tail_max);
        self.tail.drain(..excess);
        self.tail.extend(bytes);
    }

    /// How many bytes were written in all, kept or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many bytes were written but not kept (between the head and the tail).
    pub fn omitted(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// Everything kept, as text (invalid UTF-8 replaced), with a line saying how many bytes
    /// between the head and the tail were not kept, if any.
    pub fn text(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        let omitted = self.omitted();
        if omitted > 0 {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("[{omitted} bytes not kept]\n"));
        }
        let (a, b) = self.tail.as_slices();
        out.push_str(&String::from_utf8_lossy(&[a, b].concat()));
        out
    }

    /// The last `max` bytes written (of those kept), as trimmed text, after a line saying how
    /// many earlier bytes it leaves out, if any.
    pub fn last(&self, max: usize) -> String {
        let mut bytes: Vec<u8> = self.head.clone();
        bytes.extend(self.tail.iter().copied());
        // Without a gap, the head and the tail are one run of bytes; with one, only the tail
        // is the end of what was written.
        let end: &[u8] = if self.omitted() > 0 { &bytes[self.head.len()..] } else { &bytes };
        let start = end.len().saturating_sub(max);
        let text = String::from_utf8_lossy(&end[start..]).trim_end().to_owned();
        let dropped = self.total - (end.len() - start) as u64;
        if dropped > 0 { format!("[{dropped} earlier bytes not shown]\n{text}") } else { text }
    }
}

/// Reads `pipe` to its end (or its first error) into `kept`, in chunks as they come.
pub fn read_into(mut pipe: impl Read, kept: &std::sync::Mutex<Kept>) {
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        let Ok(mut k) = kept.lock() else { return };
        k.push(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(head: usize, tail: usize, chunks: &[&[u8]]) -> Kept {
        let mut k = Kept::new(head, tail);
        for c in chunks {
            k.push(c);
        }
        k
    }

    #[test]
    fn keeps_everything_within_the_bound() {
        let k = pushed(4, 4, &[b"abc", b"def", b"gh"]);
        assert_eq!((k.text(), k.total(), k.omitted()), ("abcdefgh".to_owned(), 8, 0));
        assert_eq!(k.last(3), "[5 earlier bytes not shown]\nfgh");
        assert_eq!(k.last(100), "abcdefgh");
    }

    #[test]
    fn keeps_the_head_and_the_tail_and_counts_the_gap() {
        let k = pushed(3, 4, &[b"ab", b"cdefg", b"hijklmn", b"o\n"]);
        assert_eq!(k.total(), 16);
        assert_eq!(k.omitted(), 9);
        assert_eq!(k.text(), "abc\n[9 bytes not kept]\nmno\n");
        assert_eq!(k.last(2), "[14 earlier bytes not shown]\no");
        assert_eq!(k.last(100), "[12 earlier bytes not shown]\nmno");
    }

    #[test]
    fn a_chunk_larger_than_the_tail_keeps_its_end() {
        let k = pushed(0, 3, &[b"xy", b"0123456789"]);
        assert_eq!(k.text(), "[9 bytes not kept]\n789");
        assert_eq!(k.omitted(), 9);
    }

    #[test]
    fn reads_a_pipe_to_its_end() {
        let kept = std::sync::Mutex::new(Kept::new(2, 2));
        read_into(&b"hello world"[..], &kept);
        let k = kept.into_inner().unwrap();
        assert_eq!((k.total(), k.text()), (11, "he\n[7 bytes not kept]\nld".to_owned()));
    }
}
