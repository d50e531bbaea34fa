//! `wsgi.input`: the request body as a file-like object (read, readline, readlines, iteration),
//! bounded by hyper to the Content-Length or the chunked body's end, read from the connection only
//! as the app asks (the whole body is in memory only after `read()` with no size). Every wait for
//! the client happens with the GIL released.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::RequestBody;

#[pyclass(module = "herdsman._engine", name = "Input")]
pub struct Input {
    buf: BytesMut,
    // A Mutex only to make the type Sync for pyo3; reached through `get_mut`, never locked.
    body: Mutex<Option<Incoming>>,
    runtime: tokio::runtime::Handle,
}

impl Input {
    pub fn new(body: RequestBody, runtime: tokio::runtime::Handle) -> Input {
        let (buf, body) = match body {
            RequestBody::Buffered(data) => (BytesMut::from(&data[..]), None),
            RequestBody::Stream(incoming) => (BytesMut::new(), Some(incoming)),
        };
        Input {
            buf,
            body: Mutex::new(body),
            runtime,
        }
    }

    /// Reads one more piece of the body into `buf`; false at its end.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        let slot = self.body.get_mut().unwrap_or_else(|e| e.into_inner());
        let Some(body) = slot.as_mut() else {
            return Ok(false);
        };
        let runtime = &self.runtime;
        loop {
            let frame = py.detach(|| runtime.block_on(body.frame()));
            match frame {
                None => {
                    *slot = None;
                    return Ok(false);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            self.buf.extend_from_slice(&data);
                            return Ok(true);
                        }
                    }
                }
                Some(Err(err)) => {
                    *slot = None;
                    return Err(PyOSError::new_err(format!(
                        "request body: client disconnected or sent a bad body: {err}"
                    )));
                }
            }
        }
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(self.buf.len());
        let data: Bytes = self.buf.split_to(n).freeze();
        PyBytes::new(py, &data)
    }

    fn line<'py>(&mut self, py: Python<'py>, size: Option<usize>) -> PyResult<Bound<'py, PyBytes>> {
        let mut searched = 0;
        loop {
            let limit = size.map_or(self.buf.len(), |s| s.min(self.buf.len()));
            if let Some(pos) = self.buf[searched..limit].iter().position(|&b| b == b'\n') {
                return Ok(self.take(py, searched + pos + 1));
            }
            if size.is_some_and(|s| self.buf.len() >= s) {
                return Ok(self.take(py, limit));
            }
            searched = limit;
            if !self.fill(py)? {
                let all = self.buf.len();
                return Ok(self.take(py, all));
            }
        }
    }
}

fn wanted(size: Option<isize>) -> Option<usize> {
    size.filter(|&s| s >= 0).map(|s| s as usize)
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        match wanted(size) {
            None => {
                while self.fill(py)? {}
                let all = self.buf.len();
                Ok(self.take(py, all))
            }
            Some(n) => {
                while self.buf.len() < n && self.fill(py)? {}
                Ok(self.take(py, n))
            }
        }
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.line(py, wanted(size))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let lines = PyList::empty(py);
        let hint = wanted(hint).filter(|&h| h > 0);
        let mut total = 0;
        loop {
            let line = self.line(py, None)?;
            let len = line.as_bytes().len();
            if len == 0 {
                break;
            }
            lines.append(line)?;
            total += len;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.line(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}
