output "hosts" {
  description = "Each host by name (the region's name for the core host, each edge's own): its private address and instance id."
  value = { for n, h in local.hosts : n => {
    address  = aws_instance.host[n].private_ip
    instance = aws_instance.host[n].id
  } }
}

output "load_balancer" {
  description = "The public load balancer's DNS name (its addresses are the Elastic IPs given in lb_subnets)."
  value       = aws_lb.public.dns_name
}
