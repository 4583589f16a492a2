//! Reading HTTP/1.1 responses off a raw socket, for tests that need the bytes as sent:
//! the head, a body by `Content-Length`, or a chunked body one chunk at a time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

/// One response: status, headers, body.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The status line and headers.
pub fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("header line");
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    (status, headers)
}

/// A whole response whose body has a `Content-Length` (none: empty).
pub fn read_response(r: &mut BufReader<TcpStream>) -> Resp {
    let (status, headers) = read_head(r);
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .map_or(0, |(_, v)| v.parse().expect("length"));
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    Resp {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

/// One chunk of a chunked body ("" at its end).
pub fn read_chunk(r: &mut BufReader<TcpStream>) -> String {
    let mut size = String::new();
    r.read_line(&mut size).expect("chunk size line");
    let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
    let mut buf = vec![0; n + 2];
    r.read_exact(&mut buf).expect("chunk");
    buf.truncate(n);
    String::from_utf8(buf).expect("UTF-8 chunk")
}
