"""The Textual dashboard. Imports core, never sshd."""
