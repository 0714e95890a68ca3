//! What an EC2 instance type is worth to the twin: its vCPUs (a small table by family and
//! size, as AWS publishes them), so that an instance of a larger type serves in proportion
//! more than the one the twin's capacity describes.

use crate::standin::faults::InstanceCapacity;

/// The vCPUs of an instance type (`c6i.xlarge` → 4), `None` when the size is not one AWS
/// names.
pub fn vcpus(instance_type: &str) -> Option<u32> {
    let (family, size) = instance_type.split_once('.')?;
    // Burstable families give their small sizes more vCPUs than the rest do.
    let burstable_two = family.starts_with("t3") || family.starts_with("t4");
    Some(match size {
        "nano" | "micro" | "small" => {
            if burstable_two {
                2
            } else {
                1
            }
        }
        "medium" => {
            if family.starts_with('t') {
                2
            } else {
                1
            }
        }
        "large" => 2,
        "xlarge" => 4,
        "metal" => 96,
        s => {
            let n: u32 = s.strip_suffix("xlarge")?.parse().ok()?;
            4 * n
        }
    })
}

/// The capacity of an instance of `instance_type` when `base` is what one of type `base_type`
/// serves: its workers scaled by the ratio of vCPUs (at least one), the time each request
/// takes unchanged. An unknown type keeps the base.
pub fn scaled(base: InstanceCapacity, base_type: &str, instance_type: &str) -> InstanceCapacity {
    match (vcpus(base_type), vcpus(instance_type)) {
        (Some(b), Some(t)) if b > 0 => InstanceCapacity {
            workers: ((base.workers as f64 * f64::from(t) / f64::from(b)).round() as usize).max(1),
            ..base
        },
        _ => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn vcpus_follow_aws_sizes() {
        for (t, n) in [
            ("t2.micro", 1),
            ("t2.medium", 2),
            ("t3.micro", 2),
            ("m5.large", 2),
            ("c6i.xlarge", 4),
            ("c6i.2xlarge", 8),
            ("r6g.16xlarge", 64),
            ("m6g.medium", 1),
        ] {
            assert_eq!(vcpus(t), Some(n), "{t}");
        }
        assert_eq!(vcpus("c6i.huge"), None);
        assert_eq!(vcpus("nodot"), None);
    }

    #[test]
    fn a_larger_type_has_workers_in_proportion_to_its_vcpus() {
        let base = InstanceCapacity::new(4, Duration::from_millis(10));
        assert_eq!(scaled(base, "t2.micro", "c6i.xlarge").workers, 16);
        assert_eq!(scaled(base, "c6i.xlarge", "t2.micro").workers, 1);
        assert_eq!(scaled(base, "t2.micro", "t2.micro").workers, 4);
        assert_eq!(
            scaled(base, "t2.micro", "odd.type").workers,
            4,
            "unknown: kept"
        );
        assert_eq!(
            scaled(base, "t2.micro", "c6i.xlarge").service,
            base.service,
            "each request takes as long"
        );
    }
}
