"""cockpit_api"""
