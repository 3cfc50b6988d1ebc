//! ZMTP 3, ZeroMQ's wire protocol (rfc.zeromq.org 23 and 37), with the NULL
//! mechanism: what a node (a ROUTER) needs to talk to REQ and DEALER peers
//! (libzmq, pyzmq, zmq.rs), and what the backend's DEALER needs to talk to
//! nodes, over plain TCP.
//!
//! Written here rather than taken from a crate because a node faces the
//! network: every length is checked before anything is allocated (a frame
//! longer than the limit, or a message whose frames add up to more, ends
//! the connection), which libzmq does in C with its own I/O thread and
//! zmq.rs does not do at all. The [`Decoder`] is pure (bytes in, items out);
//! the node's event loop owns the sockets.

/// The 64-byte greeting: signature, version 3.0, mechanism NULL, not a server.
pub fn greeting() -> [u8; GREETING_LEN] {
    let mut g = [0u8; GREETING_LEN];
    g[0] = 0xff;
    g[8] = 1; // padding; libzmq sends the ZMTP 1.0 length 1 here
    g[9] = 0x7f;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

pub const GREETING_LEN: usize = 64;

/// Socket types our ROUTER and DEALER talk to (a DEALER's peer is a ROUTER;
/// a ROUTER's, a REQ, a DEALER or a ROUTER).
const PEERS: [&[u8]; 3] = [b"REQ", b"DEALER", b"ROUTER"];

/// Appends a command frame: `name` and its body.
pub fn encode_command(name: &str, body: &[u8], out: &mut Vec<u8>) {
    let len = 1 + name.len() + body.len();
    encode_header(0x04, len, out);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(body);
}

/// Appends a READY command (NULL mechanism) for our socket type
/// (`ROUTER` for a node, `DEALER` for the backend's client).
pub fn encode_ready(socket_type: &str, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(32);
    body.push(b"Socket-Type".len() as u8);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type.as_bytes());
    encode_command("READY", &body, out);
}

/// Appends an ERROR command with a reason (at most 255 bytes of it).
pub fn encode_error(reason: &str, out: &mut Vec<u8>) {
    let reason = &reason.as_bytes()[..reason.len().min(255)];
    let mut body = vec![reason.len() as u8];
    body.extend_from_slice(reason);
    encode_command("ERROR", &body, out);
}

/// Appends a message: every frame but the last flagged MORE.
pub fn encode_message<'a>(frames: impl ExactSizeIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.enumerate() {
        encode_header(if i < last { 0x01 } else { 0x00 }, frame.len(), out);
        out.extend_from_slice(frame);
    }
}

/// Flags and size: short (one byte) up to 255, else long (eight bytes).
fn encode_header(flags: u8, len: usize, out: &mut Vec<u8>) {
    if len <= 255 {
        out.push(flags);
        out.push(len as u8);
    } else {
        out.push(flags | 0x02);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// What a peer sent, once complete.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// A message: its frames, in order.
    Message(Vec<Vec<u8>>),
    /// A heartbeat (ZMTP 3.1): answer with PONG and this context.
    Ping(Vec<u8>),
}

/// Why a connection is ended: the peer broke the protocol or a limit.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Greeting,
    /// Waiting for the peer's READY.
    Handshake,
    Ready,
}

/// Splits a peer's bytes into greeting, handshake and [`Item`]s.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// Most bytes a message may hold, counting 32 per frame so that many
    /// empty frames cannot pile up either.
    max_message: usize,
    frames: Vec<Vec<u8>>,
    held: usize,
}

/// What each frame counts for against the message limit, besides its body.
const FRAME_OVERHEAD: usize = 32;

fn err<T>(message: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(message.into()))
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder { state: State::Greeting, max_message, frames: Vec::new(), held: 0 }
    }

    /// Bytes of the message being received that it holds (frames already
    /// complete, awaiting their last).
    pub fn held(&self) -> usize {
        self.held
    }

    /// Decodes what `buf` holds, appending complete items to `items`;
    /// returns how many bytes it used (the rest waits for more).
    pub fn decode(&mut self, buf: &[u8], items: &mut Vec<Item>) -> Result<usize, ProtocolError> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            if self.state == State::Greeting {
                // The signature alone says whether this is ZMTP 2+ at all.
                if !rest.is_empty() && rest[0] != 0xff || rest.len() >= 10 && rest[9] & 1 == 0 {
                    return err("not a ZMTP 3 peer (bad greeting signature)");
                }
                if rest.len() < GREETING_LEN {
                    return Ok(used);
                }
                if rest[10] < 3 {
                    return err(format!("ZMTP {}.{} is too old; version 3 is needed", rest[10], rest[11]));
                }
                if &rest[12..32] != b"NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0" {
                    return err("only the NULL security mechanism is supported");
                }
                self.state = State::Handshake;
                used += GREETING_LEN;
                continue;
            }
            let Some((flags, header, len)) = frame_header(rest)? else { return Ok(used) };
            if flags & 0x04 == 0 && len.saturating_add(FRAME_OVERHEAD) > self.max_message.saturating_sub(self.held) {
                return err(format!("message over the {}-byte limit", self.max_message));
            }
            if flags & 0x04 != 0 && len > 64 * 1024 {
                return err("command over 64 KiB");
            }
            if rest.len() < header.saturating_add(len) {
                return Ok(used);
            }
            let body = &rest[header..header + len];
            used += header + len;
            if flags & 0x04 != 0 {
                self.command(body, items)?;
                continue;
            }
            if self.state != State::Ready {
                return err("a message before the READY handshake");
            }
            self.held += len + FRAME_OVERHEAD;
            self.frames.push(body.to_vec());
            if flags & 0x01 == 0 {
                self.held = 0;
                items.push(Item::Message(std::mem::take(&mut self.frames)));
            }
        }
    }

    fn command(&mut self, body: &[u8], items: &mut Vec<Item>) -> Result<(), ProtocolError> {
        let Some((&name_len, rest)) = body.split_first() else { return err("an empty command") };
        let Some((name, data)) = rest.split_at_checked(name_len as usize) else {
            return err("a command name longer than its frame");
        };
        match (name, &self.state) {
            (b"READY", State::Handshake) => {
                let socket_type =
                    properties(data)?.into_iter().find(|(k, _)| k.eq_ignore_ascii_case(b"Socket-Type")).map(|(_, v)| v);
                match socket_type {
                    Some(t) if PEERS.contains(&t) => {
                        self.state = State::Ready;
                        Ok(())
                    }
                    Some(t) => err(format!("a ROUTER does not talk to {} sockets", String::from_utf8_lossy(t))),
                    None => err("READY without a Socket-Type"),
                }
            }
            (b"PING", State::Ready) if data.len() >= 2 && data.len() <= 2 + 16 => {
                items.push(Item::Ping(data[2..].to_vec()));
                Ok(())
            }
            (b"READY", _) => err("a second READY"),
            (_, State::Handshake) => err("expected READY"),
            // PONG, SUBSCRIBE and the like mean nothing to a ROUTER.
            _ => Ok(()),
        }
    }
}

/// A frame's flags, header length and body length, once the header is all there.
fn frame_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, ProtocolError> {
    let Some(&flags) = buf.first() else { return Ok(None) };
    if flags & 0xf8 != 0 || flags & 0x05 == 0x05 {
        return err(format!("bad frame flags {flags:#04x}"));
    }
    if flags & 0x02 == 0 {
        return Ok(buf.get(1).map(|&len| (flags, 2, len as usize)));
    }
    let Some(size) = buf.get(1..9) else { return Ok(None) };
    let len = u64::from_be_bytes(size.try_into().expect("eight bytes"));
    // Anything over usize is over every limit; the callers check the limit.
    Ok(Some((flags, 9, usize::try_from(len).unwrap_or(usize::MAX / 2))))
}

/// A metadata property: name and value.
type Property<'a> = (&'a [u8], &'a [u8]);

/// READY's metadata.
fn properties(mut data: &[u8]) -> Result<Vec<Property<'_>>, ProtocolError> {
    let mut out = Vec::new();
    while let Some((&name_len, rest)) = data.split_first() {
        let Some((name, rest)) = rest.split_at_checked(name_len as usize) else { return err("truncated property") };
        let Some((size, rest)) = rest.split_at_checked(4) else { return err("truncated property") };
        let size = u32::from_be_bytes(size.try_into().expect("four bytes")) as usize;
        let Some((value, rest)) = rest.split_at_checked(size) else { return err("truncated property value") };
        out.push((name, value));
        data = rest;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_ready(socket_type: &str) -> Vec<u8> {
        let mut out = greeting().to_vec();
        let mut body = vec![11];
        body.extend_from_slice(b"Socket-Type");
        body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
        body.extend_from_slice(socket_type.as_bytes());
        encode_command("READY", &body, &mut out);
        out
    }

    #[test]
    fn a_frame_length_near_two_to_the_64_is_refused_not_overflowed() {
        // The 73 bytes that once ended a node's listener: a greeting, then a
        // long frame header whose length wraps when the overhead is added.
        for len in [u64::MAX, u64::MAX - 31, u64::MAX / 2 + 1] {
            let mut wire = greeting().to_vec();
            wire.push(0x02);
            wire.extend_from_slice(&len.to_be_bytes());
            let outcome = Decoder::new(1 << 20).decode(&wire, &mut Vec::new());
            assert!(outcome.unwrap_err().0.contains("limit"), "length {len}");
        }
    }

    #[test]
    fn messages_decode_byte_by_byte_and_whole() {
        let mut wire = peer_ready("REQ");
        encode_message([&b""[..], b"{\"op\":\"GET_ALL\"}"].into_iter(), &mut wire);
        let long = vec![b'x'; 300];
        encode_message([&long[..]].into_iter(), &mut wire);
        encode_command("PING", &[0, 10, b'c'], &mut wire);
        let want = vec![
            Item::Message(vec![vec![], b"{\"op\":\"GET_ALL\"}".to_vec()]),
            Item::Message(vec![long.clone()]),
            Item::Ping(b"c".to_vec()),
        ];
        let mut d = Decoder::new(1 << 20);
        let mut items = Vec::new();
        assert_eq!(d.decode(&wire, &mut items), Ok(wire.len()));
        assert_eq!(items, want);
        // One byte at a time: nothing is decoded before it is complete.
        let mut d = Decoder::new(1 << 20);
        let (mut buf, mut items) = (Vec::new(), Vec::new());
        for &b in &wire {
            buf.push(b);
            let used = d.decode(&buf, &mut items).unwrap();
            buf.drain(..used);
        }
        assert!(buf.is_empty());
        assert_eq!(items, want);
    }

    #[test]
    fn lengths_are_checked_before_anything_is_held() {
        let mut wire = peer_ready("DEALER");
        wire.push(0x02);
        wire.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let mut d = Decoder::new(1 << 20);
        assert!(d.decode(&wire, &mut Vec::new()).unwrap_err().0.contains("limit"));
        // Many small frames add up too.
        let mut wire = peer_ready("DEALER");
        for _ in 0..10_000 {
            encode_header(0x01, 0, &mut wire);
        }
        let mut d = Decoder::new(100_000);
        assert!(d.decode(&wire, &mut Vec::new()).is_err());
    }

    #[test]
    fn bad_peers_are_refused() {
        let decode = |wire: &[u8]| Decoder::new(1 << 20).decode(wire, &mut Vec::new());
        assert!(decode(b"GET / HTTP/1.1\r\n").is_err());
        let mut old = greeting();
        old[10] = 2;
        assert!(decode(&old).is_err());
        let mut curve = greeting();
        curve[12..17].copy_from_slice(b"CURVE");
        assert!(decode(&curve).is_err());
        assert!(decode(&peer_ready("PUB")).unwrap_err().0.contains("PUB"));
        let mut early = greeting().to_vec();
        encode_message([&b"hi"[..]].into_iter(), &mut early);
        assert!(decode(&early).is_err());
        let mut flags = peer_ready("REQ");
        flags.extend_from_slice(&[0x40, 0]);
        assert!(decode(&flags).is_err());
        // A greeting still arriving is not an error.
        assert_eq!(decode(&greeting()[..20]), Ok(0));
    }
}
