"""berth.registry"""
