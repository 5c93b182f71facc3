"""Answering turns with a trained ELMD run (the seam of generate, chat, serve and the heads)."""
