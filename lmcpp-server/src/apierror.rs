//! Helpers around lmcpp-types items.

pub(crate) fn api_error_from_text(status: u16, text: &str) -> crate::ApiError {
    crate::ApiError {
        code: status,
        message: text.to_owned(),
        kind: lmcpp_types::error::ErrorType::Unknown(String::new()),
        extra: Default::default(),
    }
}
