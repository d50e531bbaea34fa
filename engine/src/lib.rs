use pyo3::prelude::*;

mod accesslog;

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    accesslog::py::register(m)?;
    Ok(())
}
