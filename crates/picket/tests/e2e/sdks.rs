//! Placeholder: the real-SDK tests are being written.
