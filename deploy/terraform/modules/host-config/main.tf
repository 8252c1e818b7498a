# One host of a cloud deployment, as cloud-init user data: the parts it runs (configs from
# modules/mesh-config) as hardened systemd units, its secrets fetched from the secret store
# into memory at boot, and the commands the drills run on it through ssh (tradewind-part,
# tradewind-link). It needs no provider, so what it renders is checked without a cloud:
# scripts/terraform.sh renders check/ (the hosts of a three-region mesh), runs shellcheck,
# visudo and systemd-analyze on the files and `--check-config` on every config, and cuts,
# slows and heals a link between two network namespaces with tradewind-link.

terraform {
  required_version = ">= 1.5"
}

locals {
  parts = sort(keys(var.parts))
  # The core this host runs, if any (its region's keeping keys are made here).
  core = one([for n, p in var.parts : n if p.kind == "core"])
  # Erasure destroys keys in here: on the data disk, not with the other secrets in memory.
  keys_dir = var.paths.keys_dir
  files = merge(
    { for name, p in var.parts : "/etc/tradewind/${name}.toml" => { mode = "0644", content = p.config } },
    { for name, p in var.parts : "/etc/tradewind/${name}.env" => { mode = "0644", content = "KIND=${p.kind}\n" } },
    {
      "/etc/systemd/system/tradewind@.service" = {
        mode = "0644"
        content = templatefile("${path.module}/templates/tradewind@.service.tftpl", {
          keys_dir = local.keys_dir, data_disk = var.data_device != null
        })
      }
      "/etc/systemd/system/tradewind-secrets.service" = {
        mode    = "0644"
        content = templatefile("${path.module}/templates/tradewind-secrets.service.tftpl", { data_disk = var.data_device != null })
      }
      "/usr/local/sbin/tradewind-secrets" = {
        mode = "0700"
        content = templatefile("${path.module}/templates/tradewind-secrets.sh.tftpl", {
          secrets_dir    = var.paths.secrets_dir, keys_dir = local.keys_dir, arn = var.secret.arn, region = var.secret.region
          keeping_region = local.core, store = local.core == null ? "" : "${var.paths.data_dir}/${local.core}/core.redb"
        })
      }
      "/usr/local/sbin/tradewind-part" = {
        mode    = "0755"
        content = templatefile("${path.module}/templates/tradewind-part.sh.tftpl", { parts = local.parts })
      }
      "/usr/local/sbin/tradewind-link" = {
        mode    = "0755"
        content = templatefile("${path.module}/templates/tradewind-link.sh.tftpl", { regions = var.regions, interface = var.interface })
      }
      "/usr/local/sbin/tradewind-install" = {
        mode = "0700"
        content = templatefile("${path.module}/templates/tradewind-install.sh.tftpl", {
          data_device = var.data_device, binary = var.binary, parts = local.parts, ops_user = var.ops.user,
          kinds       = { for name, p in var.parts : name => p.kind }
        })
      }
      "/etc/tradewind/imds.nft" = {
        mode    = "0644"
        content = templatefile("${path.module}/templates/imds.nft.tftpl", {})
      }
      "/etc/systemd/system/tradewind-imds.service" = {
        mode    = "0644"
        content = templatefile("${path.module}/templates/tradewind-imds.service.tftpl", {})
      }
      "/etc/tradewind/ops.keys" = {
        mode    = "0644"
        content = join("", [for k in var.ops.ssh_keys : "${k}\n"])
      }
      "/etc/sudoers.d/tradewind-ops" = {
        mode    = "0440"
        content = templatefile("${path.module}/templates/sudoers.tftpl", { user = var.ops.user })
      }
    },
  )
  user_data = templatefile("${path.module}/templates/cloud-config.yaml.tftpl", {
    host = var.host, ops = var.ops, files = local.files
  })
}
