//! QemuOpts (`driver,key=value,...`) building with `,,` escaping.

/// A `-device`/`-object`/`-blockdev` option string under construction.
#[derive(Debug, Clone)]
pub struct Opts(String);

impl Opts {
    /// Starts with a bare first word (the driver or backend type).
    pub fn new(first: &str) -> Opts {
        let mut s = String::with_capacity(96);
        push_escaped(&mut s, first);
        Opts(s)
    }

    /// Starts with `key=value` as the first item (for `-blockdev driver=...`).
    pub fn kv_first(key: &str, value: &str) -> Opts {
        Opts(format!("{key}={}", escape(value)))
    }

    /// Appends `,key=value`.
    pub fn kv(mut self, key: &str, value: impl AsRef<str>) -> Opts {
        self.0.push(',');
        self.0.push_str(key);
        self.0.push('=');
        push_escaped(&mut self.0, value.as_ref());
        self
    }

    /// Appends `,key=value` when `value` is `Some`.
    pub fn opt(self, key: &str, value: Option<impl AsRef<str>>) -> Opts {
        match value {
            Some(v) => self.kv(key, v),
            None => self,
        }
    }

    /// The finished string.
    pub fn finish(self) -> String {
        self.0
    }
}

fn push_escaped(out: &mut String, v: &str) {
    for (i, part) in v.split(',').enumerate() {
        if i > 0 {
            out.push_str(",,");
        }
        out.push_str(part);
    }
}

/// Doubles commas, QemuOpts' only escape.
pub fn escape(v: &str) -> String {
    if v.contains(',') {
        v.replace(',', ",,")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn test_commas_are_doubled() {
        let o = Opts::new("virtio-net-pci")
            .kv("id", "ua-a,b")
            .kv("bus", "pci.1");
        assert_eq!(o.finish(), "virtio-net-pci,id=ua-a,,b,bus=pci.1");
    }
}
