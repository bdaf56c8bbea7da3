//! Errors the planner raises itself, each with the SQLSTATE PostgreSQL (and pgvector) would
//! send. They travel through DataFusion as `DataFusionError::External`; the gateway finds them
//! with [`VectorError::find`] and maps everything else in one place.

use datafusion::error::DataFusionError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorError {
    /// Five-character SQLSTATE, e.g. `22P02`.
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    /// The text the error is at, as the statement has it (a literal whose input failed, in
    /// its quotes; a type name): the client is told where it is, as PostgreSQL tells it.
    pub near: Option<String>,
}

/// `invalid_text_representation`
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
/// `data_exception`: pgvector's class for NaN, infinities and dimension mismatches.
pub const DATA_EXCEPTION: &str = "22000";
/// `numeric_value_out_of_range`
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";

impl VectorError {
    /// 22P02 for `text` that is no value of type `type_name`.
    pub fn syntax_of(type_name: &str, text: &str) -> Self {
        VectorError::new(
            INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type {type_name}: \"{text}\""),
        )
    }

    pub fn data(message: impl Into<String>) -> Self {
        VectorError {
            sqlstate: DATA_EXCEPTION,
            message: message.into(),
            detail: None,
            near: None,
        }
    }

    pub fn out_of_range(message: impl Into<String>) -> Self {
        VectorError {
            sqlstate: NUMERIC_VALUE_OUT_OF_RANGE,
            message: message.into(),
            detail: None,
            near: None,
        }
    }

    /// An error of any other class (`code` is a SQLSTATE).
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        debug_assert_eq!(code.len(), 5, "a SQLSTATE has five characters");
        VectorError {
            sqlstate: code,
            message: message.into(),
            detail: None,
            near: None,
        }
    }

    /// At the string literal of `text` (quoted as SQL quotes it).
    pub fn with_literal(mut self, text: &str) -> Self {
        self.near = Some(format!("'{}'", text.replace('\'', "''")));
        self
    }

    /// At `text`, as written in the statement (compared without regard to ASCII case).
    pub fn near(mut self, text: &str) -> Self {
        self.near = Some(text.to_string());
        self
    }

    pub fn with_detail(mut self, detail: &str) -> Self {
        self.detail = Some(detail.to_string());
        self
    }

    /// The `VectorError` inside a DataFusion error, however deeply it was wrapped.
    pub fn find(error: &DataFusionError) -> Option<&VectorError> {
        match error {
            DataFusionError::External(e) => e.downcast_ref::<VectorError>(),
            DataFusionError::Context(_, inner) => Self::find(inner),
            DataFusionError::Shared(inner) => Self::find(inner),
            _ => None,
        }
    }
}

impl std::fmt::Display for VectorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for VectorError {}

impl From<VectorError> for DataFusionError {
    fn from(e: VectorError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}
