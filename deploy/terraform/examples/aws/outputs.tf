locals {
  # Each part's host address by the part's name (a region's core by the region's).
  part_hosts = merge(
    { for r in var.regions : r.name => r.address },
    merge([for r in var.regions : { for e in r.edges : e.name => e.address }]...),
  )
  ssh = "ssh -o BatchMode=yes -o ConnectTimeout=10 -l ${var.ops.user}"
  # Shell that sets $h to the host of part {part}, or $hs to the hosts of region {from}.
  host_of  = "case {part} in ${join(" ", [for n, a in local.part_hosts : "${n}) h=${a} ;;"])} *) exit 2 ;; esac"
  hosts_of = "case {from} in ${join(" ", [for n, a in local.hosts : "${n}) hs='${join(" ", a)}' ;;"])} *) exit 2 ;; esac"
}

output "mesh" {
  description = "The mesh description `tradewind status` and `tradewind chaos` read (`terraform output -json mesh > mesh.json`), from a machine in admin_cidrs and ops_cidrs with the ops account's ssh key."
  value = merge(module.config.mesh, {
    admin_token_file = var.admin_token_file
    identity         = var.identity_dir
    ca               = var.ca_file
    router = {
      dns  = "${local.public[0][0]}:53"
      http = "https://${var.regions[0].address}:${var.ports.router_http}"
      zone = var.zone
    }
    # How the drills kill, stop and start a part, and cut, slow and heal the link from region
    # {from} to region {to} (on every host of {from}), through ssh (modules/host-config).
    control = {
      kill  = "${local.host_of}; ${local.ssh} $h sudo /usr/local/sbin/tradewind-part kill {part}"
      stop  = "${local.host_of}; ${local.ssh} $h sudo /usr/local/sbin/tradewind-part stop {part}"
      start = "${local.host_of}; ${local.ssh} $h sudo /usr/local/sbin/tradewind-part start {part}"
      links = {
        cut  = "${local.hosts_of}; for h in $hs; do ${local.ssh} $h sudo /usr/local/sbin/tradewind-link cut {to} || exit 1; done"
        slow = "${local.hosts_of}; for h in $hs; do ${local.ssh} $h sudo /usr/local/sbin/tradewind-link slow {to} {delay_ms} || exit 1; done"
        heal = "${local.hosts_of}; for h in $hs; do ${local.ssh} $h sudo /usr/local/sbin/tradewind-link heal {to} || exit 1; done"
      }
    }
  })
}

output "https_names" {
  description = "The names each host's HTTPS certificate must cover (`tradewind certs server --for`, before bundle.sh): an edge the zone's storefront names and its address, a core its address, and the router beside it the same."
  value = merge(module.config.https_names, {
    geo-router = [for r in var.regions : r.address]
  })
}

output "hosts" {
  description = "Every host: its private address and instance id."
  value       = merge(module.region0.hosts, module.region1.hosts, module.region2.hosts)
}

output "load_balancers" {
  description = "Each region's public load balancer: its addresses (the zone's name servers, and where its storefront names resolve) and DNS name."
  value = { for i, m in [module.region0, module.region1, module.region2] : var.regions[i].name => {
    addresses = local.public[i]
    dns_name  = m.load_balancer
  } }
}
