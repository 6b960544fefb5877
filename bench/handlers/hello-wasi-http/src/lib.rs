//! The hello health check as a `wasi:http` proxy component, for the
//! `wasmtime serve` peer in bench/run.sh: one instance per request, the same
//! status, headers and body as hello-http (`Content-Length` set, so the
//! answer is not chunked and the loaders check it byte for byte).

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const BODY: &[u8] = b"Hello, World!";

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::from_list(&[
            ("content-type".into(), b"text/plain".to_vec()),
            ("content-length".into(), BODY.len().to_string().into_bytes()),
        ])
        .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("the body, taken once");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("the body's stream, taken once");
        stream
            .blocking_write_and_flush(BODY)
            .expect("13 bytes fit one write");
        drop(stream);
        OutgoingBody::finish(body, None).expect("body complete");
    }
}

wasi::http::proxy::export!(Hello);
