# A three-region mesh deployed on this machine: each region on its own loopback address
# (127.0.N.1), every part a process of the `tradewind` binary, started and stopped by Terraform
# with nothing but what it has built in (terraform_data and local-exec). The configs come from
# the same module a cloud deployment uses (modules/mesh-config); the secrets are made here, in
# the state directory, by `tradewind certs` and `tradewind token`, and never pass through
# Terraform.
#
#   tradewind token new          # keep the token (in a 0600 file); pass its sha256:
#   terraform init && terraform apply -var tradewind=/path/to/tradewind \
#       -var admin_token_sha256=<sha256> -var admin_token_file=<the token's file> \
#       -var purge_token_sha256=<sha256> -var purge_token_file=<its file>   # the caches

#   terraform output -json mesh > mesh.json && tradewind status --mesh mesh.json
#   terraform destroy ...        # stops every part; the state directory keeps the data
# (README.md, "Deploy here", step by step.)

terraform {
  required_version = ">= 1.5"
}

locals {
  dir = abspath(var.state_dir)
  # The script, the state directory and the token's file as a shell reads them in the control
  # commands: quoted.
  sh = { for k, v in {
    script = abspath("${path.module}/part.sh")
    dir    = local.dir
    token  = var.admin_token_file == null ? "" : abspath(var.admin_token_file)
  } : k => "'${replace(v, "'", "'\\''")}'" }
  regions = [
    {
      name      = "cn-shanghai"
      address   = "127.0.1.1"
      latitude  = 31.23
      longitude = 121.47
      countries = ["CN"]
      edges     = [{ name = "cn-shanghai-1", address = "127.0.1.1" }]
    },
    {
      name      = "ap-singapore"
      address   = "127.0.2.1"
      latitude  = 1.35
      longitude = 103.82
      countries = ["SG", "MY", "TH", "ID", "VN", "PH"]
      edges     = [{ name = "ap-singapore-1", address = "127.0.2.1" }]
    },
    {
      name      = "us-east"
      address   = "127.0.3.1"
      latitude  = 38.9
      longitude = -77.04
      countries = ["US"]
      fallback  = ["ap-singapore"]
      edges     = [{ name = "us-east-1", address = "127.0.3.1" }]
    },
  ]
}

locals {
  # Every link from one region to another goes through the fault proxy, as in the demo, so that
  # the drills can cut and slow it: region a reaches region b at a's address, port
  # fault_proxy.links + b's index.
  links = flatten([for a, from in local.regions : [for b, to in local.regions : {
    name   = "${from.name}->${to.name}"
    from   = from.name
    to     = to.name
    listen = "${from.address}:${var.fault_proxy.links + b}"
    target = "${to.address}:${var.ports.raft}"
  } if a != b]])
  proxy_api = "127.0.0.1:${var.fault_proxy.api}"
  proxy_config = join("\n", concat([
    "# The fault proxy of deploy/terraform/examples/local: every link between regions.",
    "api = ${jsonencode(local.proxy_api)}",
    "token_sha256 = ${jsonencode([var.admin_token_sha256])}",
    ], flatten([for l in local.links : [
      "",
      "[[links]]",
      "name = ${jsonencode(l.name)}",
      "protocol = \"udp\"",
      "listen = ${jsonencode(l.listen)}",
      "target = ${jsonencode(l.target)}",
  ]]), [""]))
  assets = "127.0.0.1:${var.assets_port}"
  parts = merge(module.config.parts, {
    fault-proxy = {
      kind       = "fault-proxy"
      region     = null
      config     = local.proxy_config
      health_url = "http://${local.proxy_api}/v1/links"
    }
    }, var.purge_token_sha256 == null ? {} : {
    # The asset origin behind every region's cache (which forwards from a loopback address).
    assets = {
      kind       = "assets"
      region     = null
      config     = <<-EOT
        # The asset origin of deploy/terraform/examples/local: the sample catalog's images.
        listen = ${jsonencode(local.assets)}
        listener = { tls_cert = ${jsonencode("${local.dir}/certs/assets.https.pem")}, tls_key = ${jsonencode("${local.dir}/certs/assets.https.key")}, trusted_proxies = ["127.0.0.0/8"] }
      EOT
      health_url = "https://${local.assets}/healthz"
    }
  })
  https_names = merge(module.config.https_names, var.purge_token_sha256 == null ? {} : { assets = ["127.0.0.1"] })
}

module "config" {
  source = "../../modules/mesh-config"

  regions = local.regions
  ports   = var.ports
  routes = {
    for r in local.regions : r.name => { for l in local.links : l.to => l.listen if l.from == r.name }
  }
  secrets_dir        = "${local.dir}/certs"
  data_dir           = "${local.dir}/data"
  admin_token_sha256 = [var.admin_token_sha256]
  shoppers = {
    issuer    = "https://id.tradewind.example/"
    audience  = "tradewind-storefront"
    jwks_file = "${local.dir}/identity/shoppers.jwks.json"
  }
  cdn = var.purge_token_sha256 == null ? null : {
    asset_origin       = "https://${local.assets}"
    asset_origin_ca    = "${local.dir}/certs/ca.pem"
    purge_token_sha256 = var.purge_token_sha256
    purge_token_file   = abspath(var.purge_token_file)
    # (A connection on loopback comes from 127.0.0.1, whatever address it goes to.)
    forwarded_from = ["127.0.0.1/32"]
  }
  residency = {
    homes = {
      CN = "cn-shanghai", SG = "ap-singapore", MY = "ap-singapore", TH = "ap-singapore",
      ID = "ap-singapore", VN = "ap-singapore", PH = "ap-singapore", US = "us-east"
    }
    suites = { cn-shanghai = "sm4-gcm" }
  }
}

# The deployment's secrets in the state directory, each made only where missing (a region or an
# edge added later gets its own): the CA, each node's certificate with its role, the deployment
# secret, the region keys, the identity provider's key; and each HTTPS listener's certificate
# for the names clients use, issued again when those change.
resource "terraform_data" "secrets" {
  triggers_replace = [local.dir, local.https_names]

  provisioner "local-exec" {
    command = "${path.module}/part.sh secrets"
    environment = {
      TW      = var.tradewind
      DIR     = local.dir
      REGIONS = join(",", [for r in local.regions : r.name])
      EDGES   = join(",", flatten([for r in local.regions : [for e in r.edges : e.name]]))
      HTTPS   = join("\n", [for name, names in local.https_names : "${name} ${join(",", names)}"])
    }
  }
}

# Every part: its config written, checked (`--check-config`), the process started and waited
# for until it answers; stopped on destroy (SIGTERM, then SIGKILL after 20 s). A changed config
# restarts the part.
resource "terraform_data" "part" {
  for_each = local.parts

  triggers_replace = [each.value.config, var.tradewind]
  input = {
    script  = abspath("${path.module}/part.sh")
    pidfile = "${local.dir}/run/${each.key}.pid"
    dir     = local.dir
  }

  provisioner "local-exec" {
    command = "${path.module}/part.sh start"
    environment = {
      TW      = var.tradewind
      DIR     = local.dir
      KIND    = each.value.kind
      NAME    = each.key
      CONTENT = each.value.config
      PIDFILE = "${local.dir}/run/${each.key}.pid"
      HEALTH  = each.value.health_url
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "${self.input.script} stop"
    environment = {
      PIDFILE = self.input.pidfile
      DIR     = self.input.dir
    }
  }

  depends_on = [terraform_data.secrets]
}
