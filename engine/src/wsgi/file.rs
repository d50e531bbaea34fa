//! `wsgi.file_wrapper` (PEP 3333 "Optional Platform-Specific File Handling"): an iterable over a
//! file-like object, and, when the object is a real regular file, a fast path that reads it in
//! Rust with the GIL released and streams it (hyper owns the socket, so no sendfile(2): the file
//! is read in large blocks instead of Python's `blksize` ones, with no Python call per block).

use bytes::BytesMut;
use pyo3::prelude::*;

use super::respond::StartResponse;

/// Bytes read from the file per block on the fast path.
const BLOCK: usize = 256 * 1024;

#[pyclass(frozen, module = "herdsman._engine", name = "FileWrapper")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize=8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok((data.len().unwrap_or(0) > 0).then_some(data))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}

/// Sends the wrapped file from its current offset, if it is a regular file; Ok(false) when it
/// is not (the caller then iterates the wrapper).
pub fn send_file(
    py: Python<'_>,
    wrapper: &FileWrapper,
    responder: &StartResponse,
) -> PyResult<bool> {
    let filelike = wrapper.filelike.bind(py);
    let Ok(fd) = filelike
        .call_method0("fileno")
        .and_then(|n| n.extract::<i32>())
    else {
        return Ok(false);
    };
    // SAFETY: fstat into a zeroed stat of the right type, on a descriptor the file object owns
    // and keeps open while we hold a reference to it.
    let (regular, size) = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Ok(false);
        }
        (
            (st.st_mode & libc::S_IFMT) == libc::S_IFREG,
            st.st_size as u64,
        )
    };
    if !regular {
        return Ok(false);
    }
    // Python's buffered reader may have read ahead: ask it where the file really is.
    let Ok(start) = filelike
        .call_method0("tell")
        .and_then(|n| n.extract::<u64>())
    else {
        return Ok(false);
    };
    let mut left = size.saturating_sub(start);
    if let Some(length) = responder.content_length() {
        left = left.min(length);
    } else if !responder.sent() {
        responder.set_content_length(left);
    }
    let mut offset = start;
    while left > 0 {
        let want = (left as usize).min(BLOCK);
        let mut block = BytesMut::zeroed(want);
        // SAFETY: pread into our own buffer of `want` bytes, from the file's descriptor.
        let n = py.detach(|| unsafe {
            libc::pread(fd, block.as_mut_ptr().cast(), want, offset as libc::off_t)
        });
        if n <= 0 {
            break; // the file shrank, or an I/O error: the stream is cut short
        }
        let n = n as usize;
        block.truncate(n);
        if !responder.send_chunk(py, block.freeze())? {
            return Ok(true); // the client is gone
        }
        offset += n as u64;
        left -= n as u64;
    }
    Ok(true)
}

/// The app's iterable as a FileWrapper, when it is one.
pub fn as_wrapper<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, FileWrapper>> {
    obj.cast::<FileWrapper>().ok()
}
