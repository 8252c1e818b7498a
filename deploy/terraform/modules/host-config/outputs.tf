output "user_data" {
  description = "The host's cloud-init user data (#cloud-config): every file below written, the binary fetched and checked, the data disk mounted, each part started as a hardened systemd unit."
  value       = local.user_data
}

output "user_data_gzip" {
  description = "The same, gzipped and base64-encoded (EC2's user_data_base64: user data is limited to 16 KiB)."
  value       = base64gzip(local.user_data)
}

output "files" {
  description = "Every file the user data writes, by path: its text and mode (for checks that run without a host)."
  value       = local.files
}
