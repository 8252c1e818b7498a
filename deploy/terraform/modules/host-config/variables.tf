variable "host" {
  description = "The host's name (the first part it runs: a region's core host is named after the region, an edge's host after the edge)."
  type        = string
}

variable "parts" {
  description = "The parts this host runs, by name: each one's kind (core, edge, router or cdn) and config text (modules/mesh-config renders them)."
  type = map(object({
    kind   = string
    config = string
  }))

  validation {
    condition     = length(var.parts) > 0 && alltrue([for p in values(var.parts) : contains(["core", "edge", "router", "cdn"], p.kind)])
    error_message = "A host runs at least one part, each a core, an edge, a router or a CDN cache."
  }
  validation {
    condition     = alltrue([for n in keys(var.parts) : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n))])
    error_message = "Part names are lowercase letters, digits and inner dashes (they name units and files)."
  }
}

variable "regions" {
  description = "Every region's host addresses (IPv4), by region name: what `tradewind-link` cuts and slows on the drills' behalf."
  type        = map(list(string))

  validation {
    condition = alltrue(flatten([for n, addrs in var.regions : concat(
      [can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", n))],
      [for a in addrs : can(regex("^[0-9]+(\\.[0-9]+){3}$", a)) && can(cidrhost("${a}/32", 0))]
    )]))
    error_message = "Region names are lowercase letters, digits and inner dashes; addresses are IPv4."
  }
}

variable "binary" {
  description = "The tradewind release the host runs: where it is downloaded from (HTTPS), and its SHA-256, checked before it is installed."
  type = object({
    url    = string
    sha256 = string
  })

  validation {
    # (Written into a shell script, quoted: no quote, space, $ or backtick.)
    condition     = can(regex("^https://[A-Za-z0-9._~:/?#@!&+,;=%-]+$", var.binary.url)) && can(regex("^[0-9a-f]{64}$", var.binary.sha256))
    error_message = "The binary's url is https:// (letters, digits and URL punctuation; no quotes, spaces, $ or backticks) and its sha256 64 lowercase hex digits."
  }
}

variable "secret" {
  description = "Where the host's secrets are kept: an AWS Secrets Manager secret (its ARN and region) whose binary value is a gzip tar of the files the host's parts read from secrets_dir (examples/aws/bundle.sh makes it). Fetched at every boot into memory (/run), never written to disk, never passed through Terraform."
  type = object({
    arn    = string
    region = string
  })

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", var.secret.arn)) && can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.secret.region))
    error_message = "The secret is a Secrets Manager ARN, and its region an AWS region name."
  }
}

variable "paths" {
  description = "modules/mesh-config's `paths`, which the parts' configs name: the secrets in memory (under /run/tradewind, where the secrets unit puts them), the data on the data disk (/var/lib/tradewind, each part in its own directory, as its unit's StateDirectory), and the keys an erasure destroys on the data disk too."
  type = object({
    secrets_dir = string
    data_dir    = string
    keys_dir    = string
  })

  validation {
    condition     = can(regex("^/run/tradewind/[A-Za-z0-9/_.-]+$", var.paths.secrets_dir)) && !strcontains(var.paths.secrets_dir, "..")
    error_message = "The secrets live in memory, under /run/tradewind/ (a path of letters, digits, / _ . -, no ..)."
  }
  validation {
    condition     = var.paths.data_dir == "/var/lib/tradewind" && can(regex("^/var/lib/tradewind/[A-Za-z0-9/_.-]+$", var.paths.keys_dir)) && !strcontains(var.paths.keys_dir, "..")
    error_message = "The data live on the data disk, at /var/lib/tradewind, and the keys under it (they must outlive a reboot)."
  }
}

variable "data_device" {
  description = "The block device that holds the parts' data (formatted ext4 on first boot if blank, mounted at /var/lib/tradewind); null keeps the data on the root disk."
  type        = string
  default     = null

  validation {
    condition     = var.data_device == null || can(regex("^/dev/[A-Za-z0-9/_.-]+$", var.data_device))
    error_message = "The data device is a path under /dev of letters, digits, / _ . -."
  }
}

variable "interface" {
  description = "The network interface that carries traffic between regions (where `tradewind-link` slows links)."
  type        = string
  default     = "ens5"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,15}$", var.interface))
    error_message = "An interface name: up to 15 letters, digits, _ . -."
  }
}

variable "ops" {
  description = "The account the drills and operators use over ssh: its name and authorized keys. It may start, stop and kill this host's parts and shape its links (through sudo, those two commands only), nothing else as root."
  type = object({
    user     = optional(string, "tradewind-ops")
    ssh_keys = list(string)
  })

  validation {
    condition = (can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ops.user)) && !contains(["root", "tradewind"], var.ops.user)
      && length(var.ops.ssh_keys) > 0
    && alltrue([for k in var.ops.ssh_keys : can(regex("^(ssh|ecdsa-sha2|sk-ssh|sk-ecdsa)-[A-Za-z0-9@.-]+ [A-Za-z0-9+/=]+( [^\\n\\r]*)?$", k))]))
    error_message = "The ops user is a login name (lowercase, digits, _ -; not root, not tradewind), with at least one key, each one OpenSSH public key line."
  }
}
