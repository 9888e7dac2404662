//! `POST /tokenize` (with optional `with_pieces`) and `POST /detokenize`.

use serde::{Deserialize, Serialize};

use crate::common::{Extra, Prompt, TokenId};

/// Request body of `POST /tokenize`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TokenizeRequest {
    /// Text (or mixed text and tokens) to tokenize.
    pub content: Prompt,
    /// Insert special tokens such as BOS (server default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_special: Option<bool>,
    /// Tokenize special-token text as special tokens (server default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_special: Option<bool>,
    /// Return `{id, piece}` objects instead of bare ids (server default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_pieces: Option<bool>,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl TokenizeRequest {
    /// Tokenizes `content` with the server's defaults.
    pub fn new(content: impl Into<Prompt>) -> Self {
        TokenizeRequest {
            content: content.into(),
            ..Default::default()
        }
    }
}

/// The text of a token piece: a string when it is valid UTF-8, its bytes otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum Piece {
    /// Valid UTF-8 text.
    Text(String),
    /// Raw bytes of a partial UTF-8 sequence.
    Bytes(Vec<u8>),
}

/// A token id together with its piece (`with_pieces: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TokenWithPiece {
    /// Token id.
    pub id: TokenId,
    /// Token text or bytes.
    pub piece: Piece,
}

/// One element of a tokenize result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum TokenizedToken {
    /// A bare id (`with_pieces: false`).
    Id(TokenId),
    /// Id and piece (`with_pieces: true`).
    WithPiece(TokenWithPiece),
}

impl TokenizedToken {
    /// The token id.
    pub fn id(&self) -> TokenId {
        match self {
            TokenizedToken::Id(id) => *id,
            TokenizedToken::WithPiece(t) => t.id,
        }
    }
}

/// Response of `POST /tokenize`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct TokenizeResponse {
    /// The tokens.
    #[serde(default)]
    pub tokens: Vec<TokenizedToken>,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl TokenizeResponse {
    /// The token ids, whichever form the server returned.
    pub fn ids(&self) -> Vec<TokenId> {
        self.tokens.iter().map(TokenizedToken::id).collect()
    }
}

/// Request body of `POST /detokenize`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct DetokenizeRequest {
    /// Token ids to turn back into text.
    pub tokens: Vec<TokenId>,
    /// Fields this version does not model; sent as they are.
    #[serde(flatten)]
    pub extra: Extra,
}

impl DetokenizeRequest {
    /// Detokenizes `tokens`.
    pub fn new(tokens: Vec<TokenId>) -> Self {
        DetokenizeRequest {
            tokens,
            extra: Extra::new(),
        }
    }
}

/// Response of `POST /detokenize`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct DetokenizeResponse {
    /// The text.
    #[serde(default)]
    pub content: String,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
