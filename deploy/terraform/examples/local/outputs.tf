output "mesh" {
  description = "The mesh description `tradewind status --mesh` reads (`terraform output -json mesh > mesh.json`)."
  value = merge(module.config.mesh, {
    admin_token_file = var.admin_token_file == null ? null : abspath(var.admin_token_file)
    identity         = "${local.dir}/identity"
    proxy = {
      api   = "http://${local.proxy_api}"
      links = [for l in local.links : merge(l, { rtt_ms = 0 })]
    }
    # How `tradewind chaos` kills, stops and starts a part (`{part}`: its name), and cuts, slows
    # and heals the link from region `{from}` to region `{to}` (at the fault proxy, with the
    # admin token).
    control = {
      kill  = "${local.sh.script} kill ${local.sh.dir} {part}"
      stop  = "${local.sh.script} term ${local.sh.dir} {part}"
      start = "${local.sh.script} again ${local.sh.dir} {part}"
      links = var.admin_token_file == null ? null : {
        cut  = "${local.sh.script} link ${local.proxy_api} ${local.sh.token} cut {from} {to}"
        slow = "${local.sh.script} link ${local.proxy_api} ${local.sh.token} slow {delay_ms} {from} {to}"
        heal = "${local.sh.script} link ${local.proxy_api} ${local.sh.token} heal {from} {to}"
      }
    }
  })
  depends_on = [terraform_data.part]
}
