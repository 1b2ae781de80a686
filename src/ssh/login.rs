//! GNU parallel's sshlogin syntax, `[N/][user@]host[:port]`, and the defaults for what it leaves out.

use std::str::FromStr;

use super::error::Error;

/// GNU parallel's sshlogin: `[N/][user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshLogin {
    /// `N/`: job slots on this host, when given.
    pub slots: Option<usize>,
    /// `user@`, when given.
    pub user: Option<String>,
    /// The host name or address (an IPv6 address is written `[::1]` and stored without brackets).
    pub host: String,
    /// `:port`, when given.
    pub port: Option<u16>,
}

impl SshLogin {
    /// Parses `[N/][user@]host[:port]`.
    pub fn parse(login: &str) -> Result<SshLogin, Error> {
        let bad = |reason: &str| Error::BadLogin {
            login: login.to_owned(),
            reason: reason.to_owned(),
        };
        let mut rest = login.trim();
        let mut slots = None;
        if let Some((n, after)) = rest.split_once('/')
            && !n.contains('@')
        {
            let n: usize = n
                .parse()
                .map_err(|_| bad("the job count before `/` is not a number"))?;
            if n == 0 {
                return Err(bad("the job count before `/` must be at least 1"));
            }
            slots = Some(n);
            rest = after;
        }
        let mut user = None;
        if let Some((u, after)) = rest.rsplit_once('@') {
            if u.is_empty() {
                return Err(bad("the user name before `@` is empty"));
            }
            user = Some(u.to_owned());
            rest = after;
        }
        let (host, port) = split_host_port(rest).map_err(bad)?;
        if host.is_empty() {
            return Err(bad("the host name is empty"));
        }
        if host.contains(char::is_whitespace) || host.contains('/') {
            return Err(bad("the host name contains a space or `/`"));
        }
        Ok(SshLogin {
            slots,
            user,
            host: host.to_owned(),
            port,
        })
    }

    /// The user to log in as: the one given, else `$USER`/`$LOGNAME`, else the current user's name.
    pub fn user_or_default(&self) -> String {
        self.user.clone().unwrap_or_else(default_user)
    }

    /// The port to connect to: the one given, else 22.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(22)
    }
}

impl FromStr for SshLogin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SshLogin::parse(s)
    }
}

impl std::fmt::Display for SshLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = self.slots {
            write!(f, "{n}/")?;
        }
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("the port is not a number from 1 to 65535")
    };
    if let Some(inner) = s.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or("`[` without a matching `]`")?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("unexpected text after `]`"),
        };
    }
    match s.split_once(':') {
        // More than one colon: a bare IPv6 address without a port.
        Some((_, p)) if p.contains(':') => Ok((s, None)),
        Some((host, p)) => Ok((host, Some(parse_port(p)?))),
        None => Ok((s, None)),
    }
}

/// The current user's name: `$USER`, `$LOGNAME`, else the name of the current uid in `/etc/passwd` (read directly,
/// so a static binary needs no NSS modules), else `root` for uid 0.
pub fn default_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(user) = std::env::var(var)
            && !user.is_empty()
        {
            return user;
        }
    }
    let uid = nix::unistd::getuid().as_raw();
    let from_passwd = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id = fields.nth(1)?.parse::<u32>().ok()?;
                (id == uid).then(|| name.to_owned())
            })
        });
    from_passwd.unwrap_or_else(|| {
        if uid == 0 {
            "root".into()
        } else {
            uid.to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(slots: Option<usize>, user: Option<&str>, host: &str, port: Option<u16>) -> SshLogin {
        SshLogin {
            slots,
            user: user.map(str::to_owned),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_every_part() {
        assert_eq!(
            SshLogin::parse("host").unwrap(),
            login(None, None, "host", None)
        );
        assert_eq!(
            SshLogin::parse("4/alice@node1:2222").unwrap(),
            login(Some(4), Some("alice"), "node1", Some(2222))
        );
        assert_eq!(
            SshLogin::parse("root@127.0.0.1:22").unwrap(),
            login(None, Some("root"), "127.0.0.1", Some(22))
        );
        assert_eq!(
            SshLogin::parse("8/h").unwrap(),
            login(Some(8), None, "h", None)
        );
        assert_eq!(
            SshLogin::parse("u@[::1]:2200").unwrap(),
            login(None, Some("u"), "::1", Some(2200))
        );
        assert_eq!(
            SshLogin::parse("fe80::1").unwrap(),
            login(None, None, "fe80::1", None)
        );
    }

    #[test]
    fn rejects_bad_logins() {
        for bad in [
            "",
            "0/host",
            "x/host",
            "@host",
            "host:",
            "host:70000",
            "host:0",
            "[::1",
            "u@",
        ] {
            let err = SshLogin::parse(bad).unwrap_err();
            assert!(matches!(err, Error::BadLogin { .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn displays_as_parsed() {
        for s in ["4/alice@node1:2222", "host", "u@[::1]:2200"] {
            assert_eq!(SshLogin::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn defaults() {
        let l = SshLogin::parse("h").unwrap();
        assert_eq!(l.port_or_default(), 22);
        assert!(!l.user_or_default().is_empty());
    }
}
