//! The destination class of a call: internal for the tenant's extensions,
//! else what the numbering library makes of the number.

use pbx_guard::{Classifier, ClassifierConfig, DestinationClass};

/// Classifies dialled numbers (sans-IO; built once from the host's settings).
pub struct Destinations {
    classifier: Classifier,
}

impl Destinations {
    pub fn new(config: &ClassifierConfig) -> pbx_guard::Result<Destinations> {
        Ok(Destinations {
            classifier: Classifier::new(config)?,
        })
    }

    /// The class of what was dialled (`9` is the outside-line prefix of the
    /// shipped dial plan and is ignored here). A number the library cannot
    /// place counts as international.
    pub fn classify(&self, dialled: &str, is_extension: bool) -> DestinationClass {
        if is_extension {
            return DestinationClass::Internal;
        }
        let number = match dialled.strip_prefix('9') {
            Some(rest) if rest.len() > 3 => rest,
            _ => dialled,
        };
        self.classify_number(number)
    }

    /// The class of a number as it goes out a trunk.
    pub fn classify_number(&self, number: &str) -> DestinationClass {
        self.classifier
            .classify(number)
            .map(|c| c.class)
            .unwrap_or(DestinationClass::International)
    }
}
