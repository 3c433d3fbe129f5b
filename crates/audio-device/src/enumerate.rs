//! Which audio devices exist and what they can do: the data behind `chaincall phone devices`.

use std::collections::BTreeSet;
use std::fmt;

use cpal::traits::{DeviceTrait, HostTrait};

use crate::error::{DeviceError, Direction};

/// Which device a stream should use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DeviceSelector {
    /// The system's default device for the direction (ALSA's `default` PCM on Linux).
    #[default]
    Default,
    /// A device by the name [`list_devices`] shows (an ALSA PCM name such as `plughw:CARD=PCH,DEV=0`)
    /// or by its description.
    Named(String),
}

impl From<Option<String>> for DeviceSelector {
    /// `None` (nothing configured) is the default device.
    fn from(name: Option<String>) -> Self {
        name.map_or(DeviceSelector::Default, DeviceSelector::Named)
    }
}

/// An inclusive range of sample rates, in Hz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct RateRange {
    /// Lowest rate.
    pub min: u32,
    /// Highest rate.
    pub max: u32,
}

/// What a device supports in one direction, summarised from the audio system's list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// Sample rate ranges, ascending.
    pub sample_rates: Vec<RateRange>,
    /// Fewest channels.
    pub min_channels: u16,
    /// Most channels.
    pub max_channels: u16,
    /// Sample formats by cpal's names (`i16`, `f32`, ...), ascending.
    pub formats: Vec<String>,
}

/// One device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    /// The name to put in the phone config (`[audio] input`/`output`): the ALSA PCM name.
    pub name: String,
    /// What the audio system calls it.
    pub description: String,
    /// This is the default capture device.
    pub default_input: bool,
    /// This is the default playback device.
    pub default_output: bool,
    /// Capture support; `None` when the device cannot capture (or could not be opened to ask).
    pub input: Option<Capabilities>,
    /// Playback support; `None` when the device cannot play (or could not be opened to ask).
    pub output: Option<Capabilities>,
}

/// Every device of the platform's audio system; serialises to the JSON of
/// `chaincall phone devices --json`, and `Display` prints it as a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceList {
    /// The audio system (`ALSA` on Linux).
    pub host: String,
    /// The devices, the default first.
    pub devices: Vec<DeviceInfo>,
}

impl DeviceList {
    /// The devices that can capture.
    pub fn inputs(&self) -> impl Iterator<Item = &DeviceInfo> {
        self.devices.iter().filter(|d| d.input.is_some())
    }

    /// The devices that can play.
    pub fn outputs(&self) -> impl Iterator<Item = &DeviceInfo> {
        self.devices.iter().filter(|d| d.output.is_some())
    }
}

pub(crate) fn host() -> Result<cpal::Host, DeviceError> {
    // On Linux the default host is ALSA (the only one built: cpal's default features).
    cpal::host_from_id(cpal::default_host().id()).map_err(|e| DeviceError::NoHost(e.to_string()))
}

fn device_name(device: &cpal::Device) -> String {
    device
        .id()
        .map(|id| id.id().to_owned())
        .unwrap_or_else(|_| device.to_string())
}

fn capabilities(
    configs: Result<Vec<cpal::SupportedStreamConfigRange>, cpal::Error>,
) -> Option<Capabilities> {
    let configs = configs.ok()?;
    if configs.is_empty() {
        return None;
    }
    let rates: BTreeSet<RateRange> = configs
        .iter()
        .map(|c| RateRange {
            min: c.min_sample_rate(),
            max: c.max_sample_rate(),
        })
        .collect();
    let formats: BTreeSet<String> = configs
        .iter()
        .map(|c| c.sample_format().to_string())
        .collect();
    Some(Capabilities {
        sample_rates: rates.into_iter().collect(),
        min_channels: configs.iter().map(|c| c.channels()).min().unwrap_or(0),
        max_channels: configs.iter().map(|c| c.channels()).max().unwrap_or(0),
        formats: formats.into_iter().collect(),
    })
}

/// The configurations a device offers in one direction, if it offers that direction at all.
/// ALSA's `default` PCM declares no direction (cpal cannot tell without opening it), so a device
/// declaring neither is asked.
fn supported(
    device: &cpal::Device,
    direction: Direction,
) -> Option<Result<Vec<cpal::SupportedStreamConfigRange>, cpal::Error>> {
    let undeclared = !device.supports_input() && !device.supports_output();
    match direction {
        Direction::Input if device.supports_input() || undeclared => {
            Some(device.supported_input_configs().map(Iterator::collect))
        }
        Direction::Output if device.supports_output() || undeclared => {
            Some(device.supported_output_configs().map(Iterator::collect))
        }
        _ => None,
    }
}

/// Whether the device can stream in `direction`.
fn usable(device: &cpal::Device, direction: Direction) -> bool {
    supported(device, direction).is_some_and(|c| c.is_ok_and(|c| !c.is_empty()))
}

/// The host's devices with the default PCM first (ALSA's `default` is not always among the
/// hints, and is what an unconfigured phone uses).
fn all_devices(host: &cpal::Host) -> Result<Vec<cpal::Device>, DeviceError> {
    let mut devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|e| DeviceError::NoHost(e.to_string()))?
        .collect();
    for default in [host.default_output_device(), host.default_input_device()]
        .into_iter()
        .flatten()
    {
        if !devices
            .iter()
            .any(|d| device_name(d) == device_name(&default))
        {
            devices.insert(0, default);
        }
    }
    Ok(devices)
}

/// Lists every capture and playback device with its capabilities. Opens each device briefly
/// to ask (ALSA can only tell by opening); a device busy in another program shows without the
/// direction it could not open.
pub fn list_devices() -> Result<DeviceList, DeviceError> {
    let host = host()?;
    let default_in = host.default_input_device().map(|d| device_name(&d));
    let default_out = host.default_output_device().map(|d| device_name(&d));
    let mut infos: Vec<DeviceInfo> = all_devices(&host)?
        .iter()
        .map(|d| {
            let name = device_name(d);
            DeviceInfo {
                description: d
                    .description()
                    .map(|desc| desc.name().to_owned())
                    .unwrap_or_default(),
                default_input: default_in.as_deref() == Some(name.as_str()),
                default_output: default_out.as_deref() == Some(name.as_str()),
                // Only the directions the device declares: a capture-only PCM over a plugin
                // that could also play should not show up as a speaker.
                input: supported(d, Direction::Input).and_then(capabilities),
                output: supported(d, Direction::Output).and_then(capabilities),
                name,
            }
        })
        .collect();
    infos.sort_by_key(|d| !(d.default_input || d.default_output));
    Ok(DeviceList {
        host: host.id().name().to_owned(),
        devices: infos,
    })
}

/// The device a selector names, with its name.
pub(crate) fn find_device(
    selector: &DeviceSelector,
    direction: Direction,
) -> Result<(cpal::Device, String), DeviceError> {
    let host = host()?;
    match selector {
        DeviceSelector::Default => {
            let device = match direction {
                Direction::Input => host.default_input_device(),
                Direction::Output => host.default_output_device(),
            }
            .filter(|d| usable(d, direction))
            .ok_or(DeviceError::NoDefaultDevice(direction))?;
            let name = device_name(&device);
            Ok((device, name))
        }
        DeviceSelector::Named(wanted) => {
            let devices = all_devices(&host)?;
            let matches = |d: &cpal::Device| {
                device_name(d) == *wanted || d.description().is_ok_and(|desc| desc.name() == wanted)
            };
            if let Some(device) = devices.iter().find(|d| matches(d) && usable(d, direction)) {
                return Ok((device.clone(), device_name(device)));
            }
            Err(DeviceError::NotFound {
                name: wanted.clone(),
                direction,
                available: devices
                    .iter()
                    .filter(|d| usable(d, direction))
                    .map(device_name)
                    .collect(),
            })
        }
    }
}

/// The rate ranges of a device's configurations, as the table shows them (`8000-48000,96000`).
pub(crate) fn offered_rates(ranges: &[cpal::SupportedStreamConfigRange]) -> String {
    capabilities(Ok(ranges.to_vec())).map_or_else(String::new, |c| rates(&c))
}

fn rates(c: &Capabilities) -> String {
    c.sample_rates
        .iter()
        .map(|r| {
            if r.min == r.max {
                r.min.to_string()
            } else {
                format!("{}-{}", r.min, r.max)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn summary(c: Option<&Capabilities>) -> String {
    match c {
        None => "-".to_owned(),
        Some(c) => {
            let channels = if c.min_channels == c.max_channels {
                format!("{}ch", c.min_channels)
            } else {
                format!("{}-{}ch", c.min_channels, c.max_channels)
            };
            format!("{channels} {} Hz {}", rates(c), c.formats.join("/"))
        }
    }
}

impl fmt::Display for DeviceList {
    /// A table: name, default flags, input and output capabilities, description.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 5]> = self
            .devices
            .iter()
            .map(|d| {
                let default = match (d.default_input, d.default_output) {
                    (true, true) => "in+out",
                    (true, false) => "in",
                    (false, true) => "out",
                    (false, false) => "",
                };
                [
                    d.name.clone(),
                    default.to_owned(),
                    summary(d.input.as_ref()),
                    summary(d.output.as_ref()),
                    d.description.clone(),
                ]
            })
            .collect();
        let header = ["NAME", "DEFAULT", "INPUT", "OUTPUT", "DESCRIPTION"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        writeln!(f, "{} audio devices", self.host)?;
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 5]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            writeln!(f, "{}", out.trim_end())
        };
        line(f, header)?;
        if rows.is_empty() {
            return writeln!(f, "(none)");
        }
        for row in &rows {
            line(f, [&row[0], &row[1], &row[2], &row[3], &row[4]])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_names_defaults_and_capabilities() {
        let list = DeviceList {
            host: "ALSA".into(),
            devices: vec![
                DeviceInfo {
                    name: "default".into(),
                    description: "Default Audio Device".into(),
                    default_input: true,
                    default_output: true,
                    input: Some(Capabilities {
                        sample_rates: vec![RateRange {
                            min: 8000,
                            max: 48000,
                        }],
                        min_channels: 1,
                        max_channels: 2,
                        formats: vec!["f32".into(), "i16".into()],
                    }),
                    output: None,
                },
                DeviceInfo {
                    name: "hw:CARD=PCH,DEV=0".into(),
                    description: "HDA Intel PCH".into(),
                    default_input: false,
                    default_output: false,
                    input: None,
                    output: Some(Capabilities {
                        sample_rates: vec![
                            RateRange {
                                min: 44100,
                                max: 44100,
                            },
                            RateRange {
                                min: 48000,
                                max: 48000,
                            },
                        ],
                        min_channels: 2,
                        max_channels: 2,
                        formats: vec!["i32".into()],
                    }),
                },
            ],
        };
        let table = list.to_string();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ALSA audio devices");
        assert!(lines[1].starts_with("NAME"), "{table}");
        assert!(lines[2].starts_with("default"), "{table}");
        assert!(
            lines[2].contains("in+out") && lines[2].contains("1-2ch 8000-48000 Hz f32/i16"),
            "{table}"
        );
        assert!(
            lines[3].contains("2ch 44100,48000 Hz i32") && lines[3].ends_with("HDA Intel PCH"),
            "{table}"
        );
        let json = serde_json::to_value(&list).expect("serialises");
        assert_eq!(
            json["devices"][1]["output"]["sample_rates"][1]["min"],
            48000
        );
        assert_eq!(json["devices"][0]["default_input"], true);
        assert!(json["devices"][1]["input"].is_null());
    }

    #[test]
    fn unconfigured_device_name_selects_the_default() {
        assert_eq!(DeviceSelector::from(None), DeviceSelector::Default);
        assert_eq!(
            DeviceSelector::from(Some("plughw:0".to_owned())),
            DeviceSelector::Named("plughw:0".into())
        );
    }
}
